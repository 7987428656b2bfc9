"""The openai-whisper backend on weights converted from the packaged CTranslate2 Whisper base.

Needs the ``openai-whisper`` extra (scripts/setup.sh installs it); the missing-extra test
runs either way. Clips are short: openai-whisper decodes several times slower than the
default faster-whisper on CPU.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import SAMPLE_SCRIPT, cut_sample, make_clip

from locpipe.backends.asr.base import ASROptions, get_asr_backend
from locpipe.errors import BackendUnavailable
from locpipe.metrics import cer
from locpipe.stages import ingest
from locpipe.stages.transcribe import transcribe_audio

EXTRA_HINT = "pip install 'locpipe[openai-whisper]'"
#: the first three lines of the sample (1.1-8.9 s)
CLIP = (0.0, 9.0)


@pytest.fixture(scope="module")
def whisper():
    return pytest.importorskip("whisper", reason=f"openai-whisper extra not installed: {EXTRA_HINT}")


@pytest.fixture(scope="module")
def openai_backend(whisper):
    return get_asr_backend("openai-whisper", ASROptions())


@pytest.fixture(scope="module")
def sample_audio(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ingest")
    result = ingest.extract_audio(ingest.probe_episode(sample), folder)
    return folder / result.audio_16k


def test_converted_checkpoint_loads_and_keeps_the_ctranslate2_weights(whisper, tmp_path):
    import torch

    from locpipe.assets import whisper_base_dir
    from locpipe.backends.asr.whisper_convert import convert_packaged_whisper, read_ct2_model

    cached = convert_packaged_whisper()
    stamp_before = cached.stat().st_mtime_ns
    out = convert_packaged_whisper(tmp_path / "base.pt")
    assert out == tmp_path / "base.pt" and out.stat().st_size == cached.stat().st_size
    assert cached.stat().st_mtime_ns == stamp_before  # cached: not converted again
    assert not [p.name for p in tmp_path.iterdir() if p.name != "base.pt"]  # no temporary left behind

    model = whisper.load_model(str(out), device="cpu")
    assert (model.dims.n_audio_layer, model.dims.n_text_layer, model.dims.n_vocab) == (6, 6, 51865)
    _spec, ct2 = read_ct2_model(whisper_base_dir() / "model.bin")
    state = model.state_dict()
    # the fused self-attention projection splits into query, key (no bias) and value
    fused = ct2["decoder/layer_3/self_attention/linear_0/weight"].astype(np.float32)
    split = torch.cat([state[f"decoder.blocks.3.attn.{p}.weight"] for p in ("query", "key", "value")]).numpy()
    assert np.array_equal(split, fused)
    assert "decoder.blocks.3.attn.key.bias" not in state
    # cross-attention key/value come from one fused projection too
    kv = ct2["decoder/layer_5/attention/linear_1/bias"].astype(np.float32)
    assert np.array_equal(state["decoder.blocks.5.cross_attn.value.bias"].numpy(), kv[512:])
    assert np.array_equal(state["encoder.ln_post.weight"].numpy(), ct2["encoder/layer_norm/gamma"].astype(np.float32))


def test_openai_whisper_transcript_agrees_with_faster_whisper(openai_backend, sample_audio):
    faster = get_asr_backend("faster-whisper", ASROptions())
    reference_cues, _ = faster.transcribe(sample_audio, clip=CLIP)
    cues, dropped = openai_backend.transcribe(sample_audio, clip=CLIP)
    ours, theirs = "".join(c.text for c in cues), "".join(c.text for c in reference_cues)
    assert len(theirs) >= 15
    assert cer(theirs, ours) < 0.15, (ours, theirs)
    script = json.loads(SAMPLE_SCRIPT.read_text(encoding="utf-8"))["lines"]
    assert cer("".join(line["text"] for line in script[:3]), ours) < 0.25
    assert "這" not in ours  # Traditional forms converted, as with faster-whisper
    # the same output shape: words with times inside their cue, a confidence, the source
    for cue in cues:
        assert cue.source == "asr" and 0.0 < cue.confidence <= 1.0
        assert cue.words and "".join(w.text for w in cue.words).replace(" ", "") == cue.text.replace(" ", "")
        assert all(cue.start - 0.05 <= w.start <= w.end <= cue.end + 0.05 for w in cue.words)
    assert abs(cues[0].start - script[0]["start"]) < 0.6
    # word timings come from the alignment heads of config.json, not openai-whisper's fallback
    heads = openai_backend._load().alignment_heads.to_dense().nonzero().tolist()
    from locpipe.assets import whisper_base_dir

    assert heads == json.loads((whisper_base_dir() / "config.json").read_text())["alignment_heads"]


def test_music_only_audio_gives_an_empty_transcript(openai_backend, tmp_path):
    clip = make_clip(tmp_path / "tone.mp4", seconds=4.0)
    result = ingest.extract_audio(ingest.probe_episode(clip), tmp_path)
    transcript = transcribe_audio(tmp_path / result.audio_16k, openai_backend)
    assert transcript.cues == [] and transcript.backend == "openai-whisper"


def test_cli_transcribe_with_openai_whisper_and_a_checkpoint_path(whisper, tmp_path):
    from locpipe.backends.asr.whisper_convert import convert_packaged_whisper
    from locpipe.cli import main

    video = cut_sample(tmp_path / "short.mp4", 0.0, 3.4)  # the first line
    work = tmp_path / "w"
    outputs = {}
    converted = str(convert_packaged_whisper(tmp_path / "c.pt"))
    for name, extra in (("default", ["--asr", "openai-whisper"]),
                        ("path", ["--asr", "openai-whisper", "--model", converted]),
                        ("faster", [])):
        out = tmp_path / f"{name}.json"
        srt = tmp_path / f"{name}.srt"
        assert main(["transcribe", str(video), "--no-ocr", "--work", str(work), "--json", str(out),
                     "--out", str(srt), *extra]) == 0
        outputs[name] = json.loads(out.read_text(encoding="utf-8"))
        assert srt.read_text(encoding="utf-8").startswith("1\n")
    default, by_path, faster = outputs["default"], outputs["path"], outputs["faster"]
    assert default["backend"] == by_path["backend"] == "openai-whisper"
    assert faster["backend"] == "faster-whisper"
    # the backend and its version are part of the stage key: three separate transcripts
    assert "openai-whisper" in default["model"] and "packaged-whisper-base" in default["model"]
    assert str(tmp_path / "c.pt") in by_path["model"]
    assert len({d["model"] for d in outputs.values()}) == 3
    for transcript in (default, by_path):
        assert [c["text"] for c in transcript["cues"]] == [c["text"] for c in default["cues"]]
        assert transcript["cues"] and all(c["words"] and c["source"] == "asr" for c in transcript["cues"])
    texts = "".join(c["text"] for c in default["cues"])
    assert cer("".join(c["text"] for c in faster["cues"]), texts) < 0.2


def test_missing_extra_fails_with_the_install_command(monkeypatch, tmp_path, capsys):
    from locpipe.cli import main

    # an environment without torch and openai-whisper: importing them fails
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "whisper", None)
    with pytest.raises(BackendUnavailable, match=(r"needs torch and openai-whisper \(not installed\): "
                                                  r"pip install 'locpipe\[openai-whisper\]'")):
        get_asr_backend("openai-whisper", ASROptions())
    video = make_clip(tmp_path / "clip.mp4", seconds=1.0)
    assert main(["transcribe", str(video), "--asr", "openai-whisper", "--no-ocr", "--work", str(tmp_path / "w")]) != 0
    assert EXTRA_HINT in capsys.readouterr().err
    assert main(["models", "convert-whisper", "--out", str(tmp_path / "x.pt")]) != 0
    assert EXTRA_HINT in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_unknown_or_unreachable_models_fail_clearly(whisper, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing downloaded before
    monkeypatch.setenv("LOCPIPE_OFFLINE", "1")
    with pytest.raises(BackendUnavailable, match=r"'tiny' is not downloaded and offline mode"):
        get_asr_backend("openai-whisper", ASROptions(model="tiny"))._load()
    with pytest.raises(BackendUnavailable, match=r"checkpoint file not found: .*no-such\.pt"):
        get_asr_backend("openai-whisper", ASROptions(model=str(tmp_path / "no-such.pt")))._load()
    not_whisper = tmp_path / "broken.pt"
    not_whisper.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendUnavailable, match=r"cannot load model .*broken\.pt"):
        get_asr_backend("openai-whisper", ASROptions(model=str(not_whisper)))._load()
