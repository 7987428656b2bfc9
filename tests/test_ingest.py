from pathlib import Path

import pytest
from conftest import make_clip

from locpipe.errors import InputError
from locpipe.stages.ingest import extract_audio, probe_episode


def test_probe_reads_a_real_clip(tmp_path):
    info = probe_episode(make_clip(tmp_path / "ok.mp4", seconds=2.0, size="360x640"))
    assert (info.width, info.height) == (360, 640)
    assert abs(info.duration - 2.0) < 0.1
    assert info.has_audio and info.video_codec == "h264" and len(info.sha256) == 64


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.mp4", b"", "empty (0 bytes)"),
        ("notes.mp4", b"these are the producer's notes, not a video\n" * 20, "text file, not a video"),
    ],
)
def test_unusable_files_get_specific_reasons(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        probe_episode(path)
    assert reason in str(err.value) and str(path) in str(err.value)


def test_truncated_mp4_is_reported_corrupt(tmp_path):
    good = make_clip(tmp_path / "good.mp4", seconds=2.0)
    bad = tmp_path / "broken.mp4"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as err:
        probe_episode(bad)
    assert "broken.mp4" in str(err.value) and "corrupt or truncated" in str(err.value)


def test_episode_without_audio_is_rejected(tmp_path):
    silent = make_clip(tmp_path / "mute.mp4", audio=False)
    with pytest.raises(InputError, match="no audio stream"):
        probe_episode(silent)


def test_extract_audio_gives_16k_mono(tmp_path):
    import wave

    info = probe_episode(make_clip(tmp_path / "ok.mp4", seconds=2.0))
    result = extract_audio(info, tmp_path)
    with wave.open(str(tmp_path / result.audio_16k)) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        assert abs(w.getnframes() / 16000 - 2.0) < 0.1


def test_rotation_metadata_swaps_display_size(tmp_path):
    from conftest import ffmpeg

    src = make_clip(tmp_path / "land.mp4", size="640x360")
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated))
    info = probe_episode(rotated)
    assert (info.width, info.height) == (640, 360)
    assert info.rotation in (90, 270)
    assert (info.display_width, info.display_height) == (360, 640)


def test_discovery_orders_naturally_skips_partial_copies_and_shards_deterministically(tmp_path):
    from locpipe.core.batch import discover_episodes, select_shard

    for name in ("ep10.mp4", "ep2.mp4", "ep1.MOV", ".ep3.mp4", "ep4.mp4.part", "notes.txt", "ep5.tmp"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.name for p in discover_episodes([tmp_path])]
    assert found == ["ep1.MOV", "ep2.mp4", "ep10.mp4"]
    eps = discover_episodes([tmp_path])
    shards = [select_shard(eps, (i, 2)) for i in range(2)]
    assert sorted(p.name for s in shards for p in s) == sorted(found)
    assert shards == [select_shard(eps, (i, 2)) for i in range(2)]
    # an episode added later leaves every other episode in its shard
    (tmp_path / "ep11.mp4").write_bytes(b"x")
    more = discover_episodes([tmp_path])
    after = [select_shard(more, (i, 2)) for i in range(2)]
    assert [[p.name for p in s if p.name != "ep11.mp4"] for s in after] == [[p.name for p in s] for s in shards]
    many = [Path(f"ep{i:03d}.mp4") for i in range(1, 81)]
    sizes = [len(select_shard(many, (i, 4))) for i in range(4)]
    assert sum(sizes) == 80 and min(sizes) >= 10  # roughly even over a season
    with pytest.raises(InputError, match="no such file"):
        discover_episodes([tmp_path / "missing"])


def test_two_inputs_with_one_export_name_are_refused(tmp_path):
    from locpipe.cli import main

    for d in ("s1", "s2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "ep001.mp4").write_bytes(b"x")
    code = main(["run", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "o"),
                 "--markets", "us"])
    assert code == 2 and not (tmp_path / "o").exists()
