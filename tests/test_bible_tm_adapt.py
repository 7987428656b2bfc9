"""Series bible, term protection, translation memory, LLM backend and market adaptation.

Fast: no models. Every HTTP backend runs against a local fake server on 127.0.0.1.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
from pathlib import Path

import pytest
from fakes import fake_chat_server, fake_translation_server

from locpipe.artifacts import Cue, Transcript
from locpipe.backends.mt.base import TranslationBackend, TranslationRequest, choose_backend, get_mt_backend
from locpipe.errors import BackendUnavailable, ConfigError
from locpipe.localize import adapt, numbers, terms
from locpipe.localize.bible import load_bible
from locpipe.localize.tm import TranslationMemory, keys_for_lines
from locpipe.stages.translate import translate_episode, translation_checks

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_BIBLE = ROOT / "configs" / "series" / "samples.yaml"


def _transcript(*texts: str) -> Transcript:
    return Transcript(cues=[Cue(index=i, start=i * 2.0, end=i * 2.0 + 1.5, text=t) for i, t in enumerate(texts)],
                      backend="test", model="test")


@pytest.fixture(scope="module")
def bible():
    return load_bible(SAMPLE_BIBLE)


# ---------------------------------------------------------------------------- bible


def test_sample_bible_loads_with_renderings_per_language(bible):
    assert bible.characters["陆总"].render["en"] == "Mr. Lu"
    assert bible.characters["林晓"].gender == "female"
    summary = bible.summary("pt-BR")
    assert summary["names"]["林晓"] == "Lin Xiao" and summary["glossary"]["合同"] == "contrato"
    assert "sis" in bible.summary("en")["honorifics"]["姐"]
    assert len(bible.version) == 16


@pytest.mark.parametrize("body, key, reason", [
    ("characters:\n  林晓: {render: {english: Lin Xiao}}\n", "characters.林晓.render", "not a language code"),
    ("characters:\n  林晓: {render: {}}\n", "characters.林晓.render", "at least one rendering"),
    ("characters:\n  林晓: {render: {en: Lin Xiao}, gendre: female}\n", "characters.林晓.gendre", "Extra inputs"),
    ("glossary:\n  contract: {render: {en: contract}}\n", "glossary", "no Chinese characters"),
    ("characters:\n  林晓: {render: {en: Lin Xiao}}\nglossary:\n  林晓: {render: {en: x}}\n", "(top level)",
     "defined twice"),
    ("honorifics:\n  姐: {protect: true, policy: {en: sis}}\n", "honorifics.姐", "protect: true needs a render"),
])
def test_bad_bible_fails_naming_file_key_and_reason(tmp_path, body, key, reason):
    path = tmp_path / "bible.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_bible(path)
    assert err.value.path == path and err.value.key == key and reason in err.value.reason


def test_bible_suggest_finds_names_titles_kinship_and_terms(tmp_path):
    from locpipe.cli.bible import read_lines, suggest_yaml

    text = suggest_yaml({"ep001": read_lines(ROOT / "samples" / "reference" / "ep001.script.json")})
    path = tmp_path / "suggested.yaml"
    path.write_text(text, encoding="utf-8")
    suggested = load_bible(path)  # the skeleton itself is a valid bible
    assert {"林晓", "林薇", "陆总"} <= set(suggested.characters)
    assert suggested.characters["陆总"].render["en"] == "Mr. Lu"
    assert suggested.characters["林晓"].render["en"] == "Lin Xiao"
    assert "姐" in suggested.honorifics and "合同" in suggested.glossary
    assert "addressed" in text  # every entry says why


# ---------------------------------------------------------------------------- term protection


def test_placeholders_round_trip_and_report_damage(bible):
    table = terms.term_table(bible, "en", ["王总来了"])
    p = terms.protect("林晓，这份合同是陆总给王总的？", table)
    assert p.text == "__T1__ ，这份 __T2__ 是 __T3__ 给 __T4__ 的？"
    assert [e.target for e in p.slots.values()] == ["Lin Xiao", "contract", "Mr. Lu", "Mr. Wang"]
    ok = terms.restore("__ t1 __ , did __T3__ give this __T2__ to __T4__ ?", p)
    assert ok.ok and ok.text == "Lin Xiao, did Mr. Lu give this contract to Mr. Wang?"
    assert terms.restore("__T2__ is here.", terms.Protected("", {2: table[3]})).text == "Contract is here."
    bad = terms.restore("__T1__ and __T1__ signed __T9__ it", p)
    assert [e.key for e in bad.lost] == ["合同", "陆总", "王总"] and [e.key for e in bad.duplicated] == ["林晓"]
    assert bad.stray == ["__T9__"] and "__" not in bad.text


def test_names_are_rendered_the_same_in_every_episode_through_google(monkeypatch, tmp_path, bible):
    """The fake engine answers the protected text; a lost placeholder is retried without them."""
    ep1 = _transcript("陆总，您找我？", "林晓，这份合同是你签的？", "你姐？林薇？")
    ep2 = _transcript("林晓，你来一下。", "陆总在等你。")
    table = terms.term_table(bible, "en", [c.text for c in ep1.cues + ep2.cues])

    def p(text):
        return terms.protect(text, table).text

    replies = {p("陆总，您找我？"): "__T1__, you were looking for me?",
               p("林晓，这份合同是你签的？"): "__T1__, did you sign this __T2__?",
               p("你姐？林薇？"): "Your sister? __T1__?",
               p("林晓，你来一下。"): "Come here for a moment.",  # the engine dropped the placeholder
               "林晓，你来一下。": "Lin Xiaoyang, come here for a moment.",  # plain retry: mis-romanized
               p("陆总在等你。"): "__T1__ is waiting for you."}
    with fake_translation_server(replies) as (url, requests):
        monkeypatch.setenv("LOCPIPE_GOOGLE_URL", url + "/m")
        backend = choose_backend(["google"], "zh", "en")
        one = translate_episode(ep1, "en", backend, bible=bible)
        two = translate_episode(ep2, "en", backend, bible=bible)
    assert [c.text for c in one.cues] == ["Mr. Lu, you were looking for me?", "Lin Xiao, did you sign this contract?",
                                          "Your sister? Lin Wei?"]
    assert [c.text for c in two.cues] == ["Lin Xiao, come here for a moment.", "Mr. Lu is waiting for you."]
    asked = [q["q"] for _, q in requests]
    assert asked.count("林晓，你来一下。") == 1 and len(asked) == 6  # one plain retry for the lost placeholder
    assert one.glossary_violations == [] and two.glossary_violations == []
    assert two.term_edits == [{"cue": 0, "rule": "name:pinyin", "before": "Lin Xiaoyang", "after": "Lin Xiao"}]
    assert one.bible_version == bible.version


def test_speech_output_is_post_edited_to_the_bible_names(bible):
    whisper_like = ["Lu Zong, you're looking for me?", "Lin Xiao Yang, did you sign this contract?",
                    "Is it your sister? Lin Wei?", "President Lu, give me three days.", "Who was it?"]
    ep = _transcript("陆总，您找我？", "林晓，这份合同是你签的？", "你姐？林薇？", "陆总，给我三天时间。",
                     "陆总，是谁？")
    result = translate_episode(ep, "en", _FixedBackend(whisper_like, mode="post_edit"), bible=bible)
    assert [c.text for c in result.cues] == ["Mr. Lu, you're looking for me?", "Lin Xiao, did you sign this contract?",
                                             "Is it your sister? Lin Wei?", "Mr. Lu, give me three days.",
                                             "Mr. Lu, who was it?"]
    assert [e["rule"] for e in result.term_edits] == ["name:pinyin", "name:pinyin", "name:title", "name:vocative"]
    assert result.glossary_violations == []


def test_a_name_glued_to_a_stray_letter_is_fuzzy_fixed(bible):
    """Whisper on the sample wrote "Lin Xiaow": not a pinyin syllable, so only the fuzzy rule sees it."""
    ep = _transcript("林晓，这份合同是你签的？", "你认识林晓吗？")
    result = translate_episode(ep, "en", _FixedBackend(["Lin Xiaow, what's the contract?", "Do you know Lin Xiaowen?"],
                                                       mode="post_edit"), bible=bible)
    assert result.cues[0].text == "Lin Xiao, what's the contract?"
    assert result.term_edits[0] == {"cue": 0, "rule": "name:fuzzy", "before": "Lin Xiaow", "after": "Lin Xiao"}
    assert result.cues[1].text == "Do you know Lin Xiao?"  # "wen" is a syllable: the pinyin rule


@pytest.mark.parametrize(("language", "heard", "fixed"), [
    ("pt-BR", "Senhor Lu, está procurando-me.", "Sr. Lu, está procurando-me."),
    ("es-419", "Señor Lu, estás buscándome.", "Sr. Lu, estás buscándome."),
    ("id", "Bapak Lu, Anda mencari saya?", "Pak Lu, Anda mencari saya?"),
])
def test_title_forms_are_fixed_in_every_language(bible, language, heard, fixed):
    result = translate_episode(_transcript("陆总，您找我？"), language, _FixedBackend([heard], mode="post_edit"),
                               bible=bible)
    assert result.cues[0].text == fixed
    assert result.glossary_violations == []


def test_glossary_violations_are_counted_per_line(bible):
    table = terms.term_table(bible, "en")
    found = (terms.glossary_violations(0, "林晓，这份合同是你签的？", "Xiao, did you sign the agreement?", table)
             + terms.glossary_violations(1, "陆总在等你。", "Boss Lu is waiting.", table, bible.forbidden_for("en"))
             + terms.glossary_violations(2, "陆总在等你。", "Mr. Lu is waiting.", table))
    assert terms.violations_per_line(found) == {0: 2, 1: 2}
    assert {(v["term"], v["problem"]) for v in found if v["cue"] == 1} == {("陆总", "missing"), ("陆总", "forbidden")}


# ---------------------------------------------------------------------------- translation memory


class _FixedBackend(TranslationBackend):
    """Answers from a list (or a dict keyed by source text) and records what it was asked."""

    name = "fixed"

    def __init__(self, answers, mode="placeholder"):
        self.answers, self.term_mode, self.asked = answers, mode, []

    version = "1"

    def supports(self, source, target):
        return True

    def check_available(self):
        pass

    def translate(self, request: TranslationRequest) -> list[str]:
        self.asked += [c.text for c in request.cues]
        if isinstance(self.answers, dict):
            return [self.answers.get(c.text, f"<{c.text}>") for c in request.cues]
        return list(self.answers)


def test_tm_serves_repeated_lines_with_the_same_context_across_episodes(tmp_path, bible):
    recap = ["陆总，您找我？", "林晓，这份合同是你签的？", "是我签的。"]
    ep1 = _transcript(*recap)
    ep2 = _transcript(*recap, "好。三天后，我要真相。")  # opening recap, then a new line
    answers = {"是我签的。": "I signed it.", "好。三天后，我要真相。": "Fine. In three days, I want the truth."}
    with TranslationMemory(tmp_path / "tm.sqlite") as tm:
        backend = _FixedBackend(answers, mode="context")
        first = translate_episode(ep1, "en", backend, bible=bible, tm=tm)
        asked_first = list(backend.asked)
        second = translate_episode(ep2, "en", backend, bible=bible, tm=tm)
    assert asked_first == recap
    # the third recap line now has a different next line: its context changed, so it is asked again
    assert backend.asked[len(asked_first):] == ["是我签的。", "好。三天后，我要真相。"]
    assert (first.tm_hits, first.tm_misses) == (0, 3) and (second.tm_hits, second.tm_misses) == (2, 2)
    assert [c.text for c in second.cues[:2]] == [c.text for c in first.cues[:2]]
    check = {c.name: c for c in translation_checks(second)}
    assert check["tm_hit_rate"].value == 0.5 and "2 hit(s)" in check["tm_hit_rate"].detail


def test_memory_hits_get_todays_name_post_edits(tmp_path, bible):
    """A line stored before a post-edit rule existed is corrected when it is served again."""
    ep = _transcript("陆总，您找我？")
    with TranslationMemory(tmp_path / "tm.sqlite") as tm:
        keys = keys_for_lines(["陆总，您找我？"], "zh", "pt-BR", "fixed", bible.version)
        tm.store_many({keys[0]: "Senhor Lu, está procurando-me."})  # as an older release stored it
        backend = _FixedBackend([], mode="post_edit")
        result = translate_episode(ep, "pt-BR", backend, bible=bible, tm=tm)
    assert backend.asked == [] and result.tm_hits == 1
    assert result.cues[0].text == "Sr. Lu, está procurando-me."
    assert result.glossary_violations == []


def _tm_writer(path: str, worker: int) -> None:
    keys = keys_for_lines([f"第{i}句" for i in range(200)], "zh", "en", "fixed")
    with TranslationMemory(Path(path)) as tm:
        for k in range(0, 200, 20):
            tm.store_many({key: f"worker {worker} line {k}" for key in keys[k:k + 20]})


def test_tm_is_safe_for_concurrent_processes(tmp_path):
    path = tmp_path / "shared.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_tm_writer, args=(str(path), w)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with TranslationMemory(path) as tm:
        assert len(tm) == 200
        hits = tm.lookup_many(keys_for_lines([f"第{i}句" for i in range(200)], "zh", "en", "fixed"))
        assert len(hits) == 200 and tm.stats.hit_rate == 1.0
        assert tm.lookup_many(keys_for_lines(["第1句"], "zh", "en", "other-backend")) == {}


# ---------------------------------------------------------------------------- LLM backend


def _asked_lines(messages) -> list[dict]:
    return json.loads(next(m for m in messages if m["role"] == "user")["content"])["lines"]


def _good(messages) -> str:
    return json.dumps({"lines": [{"id": ln["id"], "text": f"Line {ln['id']}."} for ln in _asked_lines(messages)]})


@pytest.fixture
def llm_env(monkeypatch):
    def use(url):
        monkeypatch.setenv("LOCPIPE_LLM_URL", url)
        monkeypatch.setenv("LOCPIPE_LLM_MODEL", "test-model")
        monkeypatch.setenv("LOCPIPE_LLM_API_KEY", "sk-test")
        monkeypatch.setenv("LOCPIPE_LLM_TIMEOUT", "5")
        return choose_backend(["llm"], "zh", "en")
    return use


def test_llm_repairs_garbage_then_wrong_ids_then_accepts_valid_json(llm_env, bible):
    script = {1: lambda m: "Sure! Here are your lines.",
              2: lambda m: json.dumps({"lines": [{"id": 1, "text": "merged one and two"}]}),
              3: lambda m: "```json\n" + _good(m) + "\n```"}
    ep = _transcript("陆总，您找我？", "林晓，这份合同是你签的？", "是我签的。")
    with fake_chat_server(lambda m, n: script[n](m)) as (url, calls):
        result = translate_episode(ep, "en", llm_env(url), bible=bible, context={"notes": ["Keep it short."]})
    assert len(calls) == 3 and len(result.cues) == 3
    # the model left out the names: vocatives are put back; the missing "contract" is reported
    assert [c.text for c in result.cues] == ["Mr. Lu, line 1.", "Lin Xiao, line 2.", "Line 3."]
    assert [(v["cue"], v["term"]) for v in result.glossary_violations] == [(1, "合同")]
    first = calls[0]["body"]
    assert calls[0]["path"] == "/v1/chat/completions" and calls[0]["auth"] == "Bearer sk-test"
    assert first["model"] == "test-model" and first["response_format"] == {"type": "json_object"}
    user = json.loads(first["messages"][1]["content"])
    assert [ln["id"] for ln in user["lines"]] == [1, 2, 3]
    assert user["series_bible"]["names"]["陆总"] == "Mr. Lu" and user["market_notes"] == ["Keep it short."]
    repair = calls[1]["body"]["messages"][-1]["content"]
    assert "not valid JSON" in repair
    assert "missing ids [2, 3]" in calls[2]["body"]["messages"][-1]["content"]


def test_llm_falls_back_to_one_line_at_a_time_and_never_shifts_lines(llm_env):
    def answer(messages, n):
        lines = _asked_lines(messages)
        if len(lines) > 1:  # the scene answer always drops a line
            return json.dumps({"lines": [{"id": ln["id"], "text": "x"} for ln in lines[1:]]})
        return json.dumps({"lines": [{"id": 1, "text": "T:" + lines[0]["text"]}]})

    ep = _transcript("一", "二", "", "三")
    with fake_chat_server(answer) as (url, calls):
        result = translate_episode(ep, "en", llm_env(url))
    texts = [c.text for c in result.cues]
    assert texts == ["T:", "T:", "", "T:"]  # CJK removed; the empty cue was never sent; order kept
    assert len(calls) == 3 + 3  # scene: first try + 2 repairs; then one request per line


def test_llm_hostile_output_stays_plain_text(llm_env):
    hostile = "{\\an8\\fs200}Mr. Lu\nline two\r\n\\N${whoami};[0:v]"
    with fake_chat_server(lambda m, n: json.dumps({"lines": [{"id": 1, "text": hostile}]})) as (url, _):
        result = translate_episode(_transcript("陆总"), "en", llm_env(url))
    # ASS overrides and escapes are never part of a translation: dropped where text enters (issue 17);
    # what is left stays literal (filter syntax, shell-like text): rendering escapes it
    assert result.cues[0].text == "Mr. Lu line two ${whoami};[0:v]"


def test_llm_unreachable_or_unconfigured_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LOCPIPE_LLM_URL", raising=False)
    with pytest.raises(BackendUnavailable, match="LOCPIPE_LLM_URL is not set"):
        choose_backend(["llm"], "zh", "en")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LOCPIPE_LLM_URL", f"http://127.0.0.1:{port}/v1")
    with pytest.raises(BackendUnavailable, match="llm: cannot reach 127.0.0.1"):
        choose_backend(["llm"], "zh", "en")
    with pytest.raises(BackendUnavailable, match="is the server running"):
        get_mt_backend("llm").translate(TranslationRequest(cues=_transcript("一").cues, source_lang="zh",
                                                           target_lang="en"))


# ---------------------------------------------------------------------------- adaptation


@pytest.mark.parametrize("text, value", [("五百万", 5_000_000), ("3万", 30_000), ("1.2亿", 120_000_000),
                                         ("一亿五千万", 150_000_000), ("三万五", 35_000), ("三千五", 3_500),
                                         ("一百零五", 105), ("十万", 100_000), ("两百五", 250),
                                         ("一点二亿", 120_000_000)])
def test_chinese_numerals(text, value):
    assert numbers.parse_chinese_number(text) == value


def test_money_in_source_ignores_counts_and_idioms():
    found = lambda s: [a.value for a in numbers.money_in_source(s)]  # noqa: E731
    assert found("公司因为它亏了五百万。") == [5_000_000]
    assert found("他给了我五百万元和3万块钱") == [5_000_000, 30_000]
    assert found("两个亿！") == [200_000_000]
    assert found("给我三天时间") == found("千万别走") == found("万一他来了") == found("三万人来了") == []


def test_wrong_figure_from_speech_translation_is_fixed():
    rule = adapt.CurrencyRule()
    text, log = adapt.adapt_money(3, "公司因为它亏了五百万。", "The company lost 500,000 yuan because of it.",
                                  "en", rule)
    assert text == "The company lost 5 million yuan because of it."
    assert log == [{"cue": 3, "rule": "money:fix", "before": "500,000 yuan", "after": "5 million yuan",
                    "source": "五百万"}]
    same, none = adapt.adapt_money(3, "亏了五百万。", "We lost 5 million yuan.", "en", rule)
    assert none == [] and same == "We lost 5 million yuan."
    pt, _ = adapt.adapt_money(3, "亏了五百万。", "A empresa perdeu 500 mil.", "pt-BR", rule)
    assert pt == "A empresa perdeu 5 milhões de yuans."
    flagged, log = adapt.adapt_money(3, "亏了五百万。", "We lost a fortune.", "en", rule)
    assert flagged == "We lost a fortune." and log[0]["rule"] == "money:unmatched"


def test_yuan_converted_to_local_currency():
    usd = adapt.CurrencyRule(mode="convert", code="USD", rate=0.14)
    assert adapt.adapt_money(1, "他给了我3万元", "He gave me 30,000 yuan.", "en", usd)[0] == "He gave me $4,200."
    brl = adapt.CurrencyRule(mode="convert", code="BRL", rate=0.75)
    assert adapt.adapt_money(1, "他给了我3万元", "Ele me deu 30.000 yuans.", "pt-BR", brl)[0] == "Ele me deu R$ 22.000."
    with pytest.raises(ValueError, match="needs a rate"):
        adapt.CurrencyRule(mode="convert", code="USD")


def test_units_become_metric_or_imperial():
    assert adapt.adapt_units(1, "买了三斤肉", "I bought three catties of meat", "en", "metric")[0] == \
        "I bought 1.5 kg of meat"
    assert adapt.adapt_units(1, "走了十里路", "We walked ten li", "en", "imperial")[0] == "We walked 3.1 miles"
    assert adapt.adapt_units(1, "这里有十亩地", "There are ten mu of land here", "en", "metric")[0] == \
        "There are 6,667 m² of land here"
    assert numbers.units_in_source("这里，家里，心里") == []


def test_profanity_masked_for_ae_and_softened_or_flagged_elsewhere():
    ae = adapt.Adapter.for_market("ar", adapt.AdaptationConfig(sensitivity=adapt.SensitivityRule(action="mask")))
    text, log = ae.adapt_line(4, "该死！", "اللعنة! ماذا فعلت؟")
    assert text.startswith("ا*****!") and log[0]["rule"] == "sensitivity:mask"
    en_mask = adapt.Adapter.for_market("en", adapt.AdaptationConfig(sensitivity=adapt.SensitivityRule(action="mask")))
    assert en_mask.adapt_line(1, "", "What the fuck, you fucking liar!")[0] == "What the f***, you f****** liar!"
    per_word = adapt.Adapter.for_market("en", adapt.AdaptationConfig(
        sensitivity=adapt.SensitivityRule(action="per_word")))
    text, log = per_word.adapt_line(1, "", "Damn it, go to hell. Hello, shell.")
    assert text == "Darn it, go to hell. Hello, shell."
    assert [c["rule"] for c in log] == ["sensitivity:soften", "sensitivity:flag"]


def test_translate_episode_applies_adaptation_and_keeps_hostile_text_literal(bible):
    ep = _transcript("公司因为它亏了五百万。", "买了三斤肉", "林晓！")
    backend = _FixedBackend(["The company lost 500,000 dollars because of it.",
                             "{\\fs200}Bought three catties\nof meat, damn", "Lin Xiao!"], mode="post_edit")
    config = adapt.AdaptationConfig(currency=adapt.CurrencyRule(mode="convert", code="USD", rate=0.14),
                                    sensitivity=adapt.SensitivityRule(action="soften"))
    result = translate_episode(ep, "en", backend, bible=bible, adaptation=config)
    assert [c.text for c in result.cues] == ["The company lost $700,000 because of it.",
                                             "Bought 1.5 kg of meat, darn", "Lin Xiao!"]  # no {\\fs200}: issue 17
    assert [a["rule"] for a in result.adaptations] == ["money:convert", "units:metric", "sensitivity:soften"]
    checks = {c.name: c for c in translation_checks(result)}
    assert checks["adaptations_applied"].value == 3 and checks["glossary_violations"].passed
