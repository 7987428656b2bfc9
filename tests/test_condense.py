"""Shorter dub lines: condensing rules, the LLM rewrite, and the dub re-fitting a rewritten line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import fake_chat_server

from locpipe.artifacts import TranslatedCue, Translation
from locpipe.backends.mt.base import get_mt_backend
from locpipe.backends.tts.base import get_tts_backend
from locpipe.config import DubConfig, Market, MarketConfig, RenderProfile
from locpipe.errors import BackendUnavailable
from locpipe.localize.condense import char_budget, condense, make_shortener
from locpipe.stages.qc import check_dub
from locpipe.stages.synthesize import synthesize_dub


@pytest.mark.parametrize(("text", "short"), [
    ("Well, I am not going to tell you, you know.", "I'm not gonna tell you."),
    ("I do not know what it is that you are really saying.", "I don't know what it's that you're saying."),
    ("Okay. We will just wait here.", "We'll wait here."),
    ("Lin Xiao, I cannot do this.", "Lin Xiao, I can't do this."),
])
def test_english_condensing_rules(text, short):
    assert condense(text, "en") == short


def test_languages_without_rules_are_left_alone():
    assert condense("彼は来ない。", "ja") == "彼は来ない。"
    assert condense("Bueno, no sé nada.", "es-419") == "No sé nada."


def test_char_budget_scales_with_the_time_missing():
    assert char_budget("x" * 100, speech_seconds=4.0, available_seconds=2.0, max_stretch=1.25) == 62
    assert char_budget("x" * 10, speech_seconds=1.0, available_seconds=5.0, max_stretch=1.25) == 10


class _Refuses:
    name = "broken"

    def shorten(self, *args):
        raise BackendUnavailable("endpoint down")


def test_shortener_falls_back_to_rules_when_a_backend_fails():
    shorten = make_shortener("en", [_Refuses()])
    rewrite = shorten(0, "我不知道。", "I do not know.", 10)
    assert rewrite is not None and (rewrite.text, rewrite.by) == ("I don't know.", "rules")
    assert shorten(1, "走。", "Go.", 2) is None  # nothing to condense: the overflow stays for QC


def test_llm_shortens_within_the_budget(monkeypatch):
    def answer(messages, n):
        asked = json.loads(messages[-1]["content"])
        assert asked["max_characters"] == 20 and asked["source"] == "你到底想怎么样？"
        return json.dumps({"lines": [{"id": 1, "text": "What do you want?"}]})

    with fake_chat_server(answer) as (url, calls):
        monkeypatch.setenv("LOCPIPE_LLM_URL", url)
        llm = get_mt_backend("llm")
        rewrite = make_shortener("en", [llm])(3, "你到底想怎么样？", "What on earth is it that you want from me?", 20)
    assert rewrite is not None and (rewrite.text, rewrite.by) == ("What do you want?", "llm")
    assert len(calls) == 1


def _market() -> Market:
    config = MarketConfig(code="us-test", name="test", language="en",
                          dub=DubConfig(enabled=True, voice="piper:en_US-joe-medium", max_stretch=1.25))
    return Market(config=config, profile=RenderProfile(name="app"), source=Path("us-test.yaml"))


def test_overflowing_line_is_rewritten_spoken_again_and_fits(tmp_path):
    """A wordy line in a 2.2 s slot overflows at x1.25; the condensed rendering is re-spoken."""
    text = "Well, I am not going to tell you, you know, because I do not trust you."
    cues = [TranslatedCue(index=0, start=0.5, end=2.0, source_text="我不会告诉你，我不相信你。", text=text),
            TranslatedCue(index=1, start=2.8, end=4.0, source_text="走吧。", text="Let's go.")]
    translation = Translation(language="en", backend="test", cues=cues)
    tts = get_tts_backend("piper")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    plain = synthesize_dub(translation, _market(), 6.0, tmp_path / "a", tts)
    assert plain.lines[0].outcome == "overflow"  # the premise: too long as translated

    short = synthesize_dub(translation, _market(), 6.0, tmp_path / "b", tts, shorten=make_shortener("en", []))
    first = short.lines[0]
    assert first.rewritten_by == "rules" and first.rewritten_from == text
    assert first.text == "I'm not gonna tell you because I don't trust you."
    assert first.speech_seconds < plain.lines[0].speech_seconds
    assert first.placed_end <= short.lines[1].placed_start  # never overlaps the next line
    checks = {c.name: c for c in check_dub(short)}
    assert checks["dub_rewrites"].value == 1 and "rules" in checks["dub_rewrites"].detail
