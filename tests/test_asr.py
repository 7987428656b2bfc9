"""Real transcription of the bundled sample with the packaged Whisper base weights."""

import json
import subprocess
import sys

import pytest
from conftest import SAMPLE_SCRIPT, ffmpeg, make_clip

from locpipe.backends.asr.base import ASROptions, get_asr_backend
from locpipe.backends.asr.faster_whisper_asr import guard_reason
from locpipe.metrics import cer
from locpipe.stages import ingest
from locpipe.stages.transcribe import transcribe_audio
from locpipe.stages.translate import CJK_RE


@pytest.fixture(scope="module")
def backend():
    return get_asr_backend("faster-whisper", ASROptions())


@pytest.fixture(scope="module")
def sample_audio(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ingest")
    result = ingest.extract_audio(ingest.probe_episode(sample), folder)
    return folder / result.audio_16k


def test_sample_transcript_is_simplified_chinese_close_to_the_script(backend, sample_audio):
    transcript = transcribe_audio(sample_audio, backend)
    script = json.loads(SAMPLE_SCRIPT.read_text(encoding="utf-8"))
    reference = "".join(line["text"] for line in script["lines"])
    hypothesis = "".join(c.text for c in transcript.cues)
    assert cer(reference, hypothesis) < 0.15
    assert "這" not in hypothesis and "們" not in hypothesis  # Traditional forms converted
    # cue times follow the spoken lines
    first = script["lines"][0]
    assert abs(transcript.cues[0].start - first["start"]) < 0.6
    assert all(c.words for c in transcript.cues)
    assert transcript.cues[-1].end <= script["duration"]


def test_music_only_audio_gives_an_empty_transcript(backend, tmp_path):
    clip = make_clip(tmp_path / "tone.mp4", seconds=4.0)
    result = ingest.extract_audio(ingest.probe_episode(clip), tmp_path)
    transcript = transcribe_audio(tmp_path / result.audio_16k, backend)
    assert transcript.cues == []


def test_offline_english_translation_of_the_sample(sample_audio, backend):
    from locpipe.backends.mt.base import choose_backend
    from locpipe.stages.translate import translate_transcript

    transcript = transcribe_audio(sample_audio, backend)
    translation = translate_transcript(transcript, "en", choose_backend(["whisper-translate"], "zh", "en"),
                                       audio_16k=sample_audio)
    texts = [c.text for c in translation.cues]
    assert len(texts) == len(transcript.cues)
    assert sum(1 for t in texts if t) >= 0.8 * len(texts)
    assert not any(CJK_RE.search(t) for t in texts)
    assert any("three days" in t.lower() for t in texts)


@pytest.mark.parametrize(
    "text, no_speech, logprob, ratio, dropped",
    [
        ("陆总，您找我？", 0.1, -0.3, 1.2, False),
        ("请不吝点赞 订阅 转发", 0.2, -0.4, 1.3, True),
        ("谢谢谢谢谢谢谢谢谢谢谢谢", 0.1, -0.3, 3.1, True),
        ("嗯", 0.8, -1.1, 1.0, True),
        ("好 三天后 我要真相", 0.67, -0.84, 1.1, False),  # real dialogue over music in the sample
        ("他说什么", 0.1, -1.5, 1.1, True),
    ],
)
def test_hallucination_guards(text, no_speech, logprob, ratio, dropped):
    assert (guard_reason(text, no_speech, logprob, ratio) is not None) == dropped


def test_sidecar_script_is_the_source_text_and_asr_refines_timing(sample, tmp_path):
    import shutil

    from conftest import ROOT

    from locpipe.cli import main

    video = tmp_path / "ep001.mp4"
    shutil.copy(sample, video)
    script = (ROOT / "samples" / "reference" / "ep001.zh.srt").read_text(encoding="utf-8")
    # a hand-timed script, 0.25 s late everywhere
    import pysubs2

    subs = pysubs2.SSAFile.from_string(script)
    subs.shift(ms=250)
    (tmp_path / "ep001.zh.srt").write_text(subs.to_string("srt"), encoding="utf-8")
    out_json = tmp_path / "t.json"
    assert main(["transcribe", str(video), "--json", str(out_json), "--work", str(tmp_path / "w")]) == 0
    transcript = json.loads(out_json.read_text())
    reference = json.loads(SAMPLE_SCRIPT.read_text(encoding="utf-8"))["lines"]
    assert [c["text"] for c in transcript["cues"]] == [line["text"] for line in reference]
    assert {c["source"] for c in transcript["cues"]} == {"sidecar"}
    errors = [abs(c["start"] - line["start"]) for c, line in zip(transcript["cues"], reference)]
    assert sum(errors) / len(errors) < 0.1  # moved back onto the real speech onsets
    assert (tmp_path / "ep001.transcript.zh.srt").exists()


def test_fusion_prefers_on_screen_text_keeps_off_screen_speech_and_flags_disagreement():
    from locpipe.artifacts import Cue
    from locpipe.stages.transcribe import fuse

    ocr = [Cue(index=0, start=1.0, end=3.0, text="陆总，您找我？", source="ocr"),
           Cue(index=1, start=4.0, end=6.0, text="证据就在这里", source="ocr")]
    asr = [Cue(index=0, start=1.1, end=2.9, text="路总,您找我?"),
           Cue(index=1, start=4.1, end=5.8, text="今天天气很好"),
           Cue(index=2, start=8.0, end=9.0, text="门外有人")]  # heard, never shown
    fused = fuse(ocr, asr)
    assert [c.text for c in fused] == ["陆总，您找我？", "证据就在这里", "门外有人"]
    assert [c.source for c in fused] == ["ocr", "ocr", "asr"]
    assert "ocr-asr-disagree" in fused[1].flags and fused[1].confidence <= 0.4
    assert fused[0].flags == [] and "off-screen" in fused[2].flags


def _transcribe_cli(episode, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "locpipe", "transcribe", str(episode), "--json",
                           str(tmp_path / "t.json"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600)


def test_landscape_4k_and_variable_frame_rate_sources_transcribe(sample, tmp_path):
    """A 16:9 UHD re-frame of the sample with variable frame timing: same dialogue, found all the same."""
    src = tmp_path / "ep_wide_vfr.mp4"
    ffmpeg("-t", "9", "-i", str(sample), "-vf", "scale=3840:2160,setsar=1,select='not(mod(n\\,7))+lt(mod(n\\,3)\\,2)'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src))
    proc = _transcribe_cli(src, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cues = json.loads((tmp_path / "t.json").read_text())["cues"]
    assert len(cues) >= 2 and all(CJK_RE.search(c["text"]) for c in cues)


@pytest.mark.parametrize("kind", ["silent", "no-audio"])
def test_silent_or_missing_audio_is_an_empty_transcript_or_a_clear_error(kind, tmp_path):
    episode = tmp_path / f"ep_{kind}.mp4"
    if kind == "silent":
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=360x640:rate=30:duration=4", "-f", "lavfi", "-i",
               "anullsrc=r=48000:cl=stereo", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
               str(episode))
    else:
        make_clip(episode, audio=False)
    proc = _transcribe_cli(episode, tmp_path)
    if kind == "silent":
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((tmp_path / "t.json").read_text())["cues"] == []
    else:
        assert proc.returncode != 0
        assert f"{episode.name}" in proc.stderr and "no audio stream" in proc.stderr
        assert "Traceback" not in proc.stderr
