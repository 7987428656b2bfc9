"""OUT_DIR/manifest.json under concurrent writers (``run --shard`` array tasks, watch daemons, farm workers)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from locpipe.core.manifest import LOCK_FILE, merge_units, write_manifest
from locpipe.core.reports import EpisodeReport, UnitReport
from locpipe.core.settings import RunSettings

WRITERS = 4
WRITES = 12


def _writer(out: str, writer: int, start) -> None:
    """One shard's worth of episodes, each merged into the manifest as soon as it is done."""
    start.wait()
    settings = RunSettings(out_dir=Path(out), work_dir=Path(out) / "w", markets=())
    for i in range(WRITES):
        name = f"w{writer}-ep{i:02d}"
        report = EpisodeReport(episode=name, source=f"/in/{name}.mp4",
                               units=[UnitReport(episode=name, market="us", status="ok")])
        write_manifest(Path(out), [report], settings, started=0.0)


def test_concurrent_writers_lose_no_unit(tmp_path):
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    names = {u["episode"] for u in manifest["units"]}
    assert names == {f"w{w}-ep{i:02d}" for w in range(WRITERS) for i in range(WRITES)}
    assert len(manifest["episodes"]) == WRITERS * WRITES
    # the folder itself is locked on a local disk: nothing but the manifest is left in OUT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    assert not (tmp_path / LOCK_FILE).exists()


def test_merge_keeps_other_units_and_replaces_the_same_unit():
    old = {"units": [{"episode": "e1", "market": "us", "distributor": "", "status": "failed"},
                     {"episode": "e2", "market": "br", "distributor": "", "status": "ok"}],
           "episodes": [{"episode": "e2", "source": "x"}]}
    rerun = EpisodeReport(episode="e1", source="/in/e1.mp4", units=[UnitReport(episode="e1", market="us", status="ok")])
    episodes, units = merge_units(old, [rerun])
    assert [(u["episode"], u["market"], u["status"]) for u in units] == [("e1", "us", "ok"), ("e2", "br", "ok")]
    assert [e["episode"] for e in episodes] == ["e1", "e2"]
