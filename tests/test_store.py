import os

import pytest

from locpipe.artifacts import Transcript
from locpipe.core.store import ArtifactStore, atomic_write_text, make_key


def _make(calls):
    def make(folder):
        calls.append(folder)
        (folder / "payload.txt").write_text("data")
        return Transcript(cues=[], backend="b", model="m")

    return make


def test_same_key_is_built_once_and_reloaded(tmp_path):
    calls = []
    store = ArtifactStore(tmp_path)
    s1 = store.get_or_make("ep", "transcribe", {"a": 1}, Transcript, _make(calls))
    s2 = ArtifactStore(tmp_path).get_or_make("ep", "transcribe", {"a": 1}, Transcript, _make(calls))
    assert len(calls) == 1 and s1.dir == s2.dir and s1.model == s2.model
    assert s1.key == s2.key == make_key("transcribe", {"a": 1}) and not s1.cached and s2.cached
    assert (s2.file("payload.txt")).read_text() == "data"
    assert [r.cached for r in store.records] == [False]


def test_changed_parts_change_the_key(tmp_path):
    calls = []
    store = ArtifactStore(tmp_path)
    store.get_or_make("ep", "s", {"a": 1}, Transcript, _make(calls))
    store.get_or_make("ep", "s", {"a": 2}, Transcript, _make(calls))
    assert len(calls) == 2
    assert make_key("s", {"a": 1, "b": 2}) == make_key("s", {"b": 2, "a": 1})


def test_crash_inside_a_stage_leaves_nothing_behind(tmp_path):
    store = ArtifactStore(tmp_path)

    def boom(folder):
        (folder / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.get_or_make("ep", "s", {"a": 1}, Transcript, boom)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    # a rerun builds it normally
    calls = []
    store.get_or_make("ep", "s", {"a": 1}, Transcript, _make(calls))
    assert len(calls) == 1


def test_sweep_removes_temporaries_of_dead_writers_only(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "episodes" / "ep-1" / "render" / f".abc.{int(dead.stdout)}.tmp"
    stale.mkdir(parents=True)
    live = tmp_path / "episodes" / "ep-1" / "render" / f".def.{os.getppid()}.tmp"
    live.mkdir()
    assert ArtifactStore(tmp_path).sweep_temporaries() == 1
    assert not stale.exists() and live.exists()


def test_atomic_write_never_exposes_partial_file(tmp_path):
    target = tmp_path / "out" / "x.json"
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]
    assert not any(n.endswith(".tmp") for n in os.listdir(target.parent))
