import shutil
import socket

import pytest
from fakes import fake_translation_server

from locpipe.artifacts import Cue, Transcript
from locpipe.backends.mt.base import choose_backend, get_mt_backend
from locpipe.errors import BackendUnavailable, StageError
from locpipe.stages.translate import build_translation, translate_transcript


def _transcript(*texts):
    return Transcript(cues=[Cue(index=i, start=i * 2.0, end=i * 2.0 + 1.5, text=t) for i, t in enumerate(texts)],
                      backend="test", model="test")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_google_backend_against_local_fake_server(monkeypatch):
    replies = {"你好，陆总。": "Hello, Mr. Lu.", "五百万？": "Five million?"}
    with fake_translation_server(replies) as (url, requests):
        monkeypatch.setenv("LOCPIPE_GOOGLE_URL", url + "/m")
        backend = choose_backend(["google"], "zh", "pt-BR")
        result = translate_transcript(_transcript("你好，陆总。", "五百万？"), "pt-BR", backend)
    assert [c.text for c in result.cues] == ["Hello, Mr. Lu.", "Five million?"]
    assert result.backend == "google"
    assert {q["tl"] for _, q in requests} == {"pt"} and {q["sl"] for _, q in requests} == {"zh-CN"}


def test_deepl_backend_against_local_fake_server(monkeypatch):
    with fake_translation_server({"走吧": "Vamos"}) as (url, requests):
        monkeypatch.setenv("DEEPL_API_KEY", "test-key:fx")
        monkeypatch.setenv("LOCPIPE_DEEPL_URL", url + "/v2/")
        backend = choose_backend(["deepl"], "zh", "es-419")
        result = translate_transcript(_transcript("走吧"), "es-419", backend)
    assert result.cues[0].text == "Vamos"
    assert requests[0][1]["auth_key"] == "test-key:fx"


def test_libretranslate_backend_against_local_fake_server(monkeypatch):
    """Self-hosted LibreTranslate needs no key: a placeholder is sent and the server ignores it."""
    monkeypatch.delenv("LIBRETRANSLATE_API_KEY", raising=False)
    with fake_translation_server({"证据就在这里": "A prova está aqui"}) as (url, requests):
        monkeypatch.setenv("LOCPIPE_LIBRETRANSLATE_URL", url)
        backend = choose_backend(["libretranslate"], "zh", "pt-BR")
        result = translate_transcript(_transcript("证据就在这里"), "pt-BR", backend)
    assert result.cues[0].text == "A prova está aqui"
    path, query = requests[0]
    assert path == "/translate" and (query["source"], query["target"]) == ("zh", "pt")


def test_mymemory_backend_uses_the_market_locale(monkeypatch):
    with fake_translation_server({"走吧": "Vámonos"}) as (url, requests):
        monkeypatch.setenv("LOCPIPE_MYMEMORY_URL", url + "/get")
        backend = choose_backend(["mymemory"], "zh", "es-MX")
        result = translate_transcript(_transcript("走吧"), "es-MX", backend)
    assert result.cues[0].text == "Vámonos"
    assert requests[0][1]["langpair"] == "zh-CN|es-MX"


def test_hostile_backend_output_is_flattened_and_cjk_leaks_removed(monkeypatch):
    hostile = {"一": "line one\nline two\r\x00{\\fs200}", "二": "Hello 你好 there", "三": "好"}
    with fake_translation_server(hostile) as (url, _):
        monkeypatch.setenv("LOCPIPE_GOOGLE_URL", url + "/m")
        result = translate_transcript(_transcript("一", "二", "三"), "en", get_mt_backend("google"))
    texts = [c.text for c in result.cues]
    assert texts[0] == "line one line two"  # ASS override tags are never part of a translation (issue 17)
    assert texts[1] == "Hello there"
    assert texts[2] == ""
    assert any("untranslated" in n for n in result.notes) and any("CJK" in n for n in result.notes)


def test_unreachable_service_fails_fast_and_names_every_candidate(monkeypatch):
    monkeypatch.setenv("LOCPIPE_GOOGLE_URL", f"http://127.0.0.1:{_free_port()}/m")
    monkeypatch.delenv("DEEPL_API_KEY", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no apertium binary
    with pytest.raises(BackendUnavailable) as err:
        choose_backend(["deepl", "google", "apertium", "whisper-translate"], "zh", "pt-BR")
    msg = str(err.value)
    assert "zh->pt-BR" in msg
    assert "deepl: DEEPL_API_KEY is not set" in msg
    assert "google: cannot reach 127.0.0.1" in msg
    assert "apertium: apertium is not installed" in msg
    assert "whisper-translate: does not translate zh->pt" in msg


def test_backend_that_drops_lines_is_an_error():
    with pytest.raises(StageError, match="returned 1 lines for 2 cues"):
        build_translation(_transcript("一", "二"), ["one"], "en", "bad")


def test_offline_english_backend_is_available_for_english_only():
    backend = choose_backend(["whisper-translate"], "zh", "en")
    assert backend.name == "whisper-translate"
    assert not backend.supports("zh", "pt")


def test_whisper_english_sentences_are_assigned_to_the_cue_they_overlap():
    from locpipe.artifacts import Word
    from locpipe.backends.mt.whisper_translate import assign_sentences, sentences

    cues = _transcript("一", "二", "三").cues  # 0-1.5, 2-3.5, 4-5.5
    words = [Word(start=0.1, end=0.5, text=" Mr."), Word(start=0.5, end=1.9, text=" Lu."),
             Word(start=2.2, end=2.6, text=" Who"), Word(start=2.6, end=3.0, text=" is"),
             Word(start=3.1, end=4.1, text=" it?"),  # spills into the next cue: stays with its sentence
             Word(start=9.0, end=9.5, text=" Subscribe.")]  # far from every cue: dropped
    assert assign_sentences(sentences(words), cues) == ["Mr. Lu.", "Who is it?", ""]
    # an unpunctuated segment end still separates units: each segment is split on its own
    seg1 = [Word(start=0.2, end=1.4, text=" I'm going to be honest")]
    seg2 = [Word(start=4.1, end=5.2, text=" I will find out")]
    units = sentences(seg1) + sentences(seg2)
    assert assign_sentences(units, cues) == ["I'm going to be honest", "", "I will find out"]


def test_apertium_chain_uses_the_mode_names_the_packages_install():
    from locpipe.backends.mt.apertium import resolve_chain

    debian12 = {"eng-spa", "spa-eng", "es-pt", "es-pt_BR", "pt-es"}
    assert resolve_chain("es", debian12) == ["eng-spa"]
    assert resolve_chain("pt", debian12, region="BR") == ["eng-spa", "es-pt_BR"]
    assert resolve_chain("pt", debian12, region="PT") == ["eng-spa", "es-pt"]
    assert resolve_chain("pt", {"en-es", "es-pt"}, region="BR") == ["en-es", "es-pt"]
    assert resolve_chain("pt", {"eng-spa"}) is None


@pytest.mark.skipif(not shutil.which("apertium"), reason="Debian apertium not installed (.ci/run installs it)")
def test_apertium_pivot_translates_english_to_spanish_and_brazilian_portuguese():
    from locpipe.backends.mt.apertium import ApertiumPivot, _modes, resolve_chain

    ApertiumPivot().check_available()
    english = "Where is the contract?"
    for target, region, word in (("es", "", "contrato"), ("pt", "BR", "contrato")):
        text = english
        for mode in resolve_chain(target, _modes(), region=region):
            text = ApertiumPivot._run(mode, text)
        assert word in text and text != english
