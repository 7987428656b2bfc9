"""Render farm on a real Redis server and real Celery workers (``locpipe farm worker`` processes).

The failure drills (a worker SIGKILLed mid-unit, a pool process SIGKILLed, Redis killed and
restarted) use the farm's drill units: the same lock / no-op / commit protocol and the same
Celery settings as real units, with a sleep instead of the pipeline, so each drill takes
seconds. One real pipeline unit (the sample, cut short, rendered small) runs end to end
across an ``asr`` worker and a ``tts,render`` worker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cut_sample

from locpipe.config import DEFAULT_CONFIG_DIR
from locpipe.errors import ConfigError
from locpipe.farm.localredis import LocalRedis
from locpipe.farm.phases import drill_phase, remove_stale_temporaries
from locpipe.farm.settings import FarmSettings, load_settings
from locpipe.farm.state import FarmState
from locpipe.farm.units import DrillSpec, plan_units, run_settings

LOCPIPE = str(Path(sys.executable).with_name("locpipe"))
#: drills: units of ~2 s; a dead worker's lease expires after 4 s and a reaper looks every second.
#: The visibility timeout is far beyond every test: only the leases can bring a dead worker's unit back
DRILL_ENV = {"LOCPIPE_FARM_VISIBILITY_TIMEOUT": "3600", "LOCPIPE_FARM_LEASE_TTL": "4",
             "LOCPIPE_FARM_REAP_INTERVAL": "1", "LOCPIPE_FARM_RETRY_BASE": "0.5", "LOCPIPE_FARM_RETRY_MAX": "2",
             "LOCPIPE_FARM_BUSY_DELAY": "1"}


class Worker:
    """A ``locpipe farm worker`` in its own session (process group), logging to a file."""

    def __init__(self, tmp: Path, broker: str, queues: str, env: dict, concurrency: int = 1, name: str = "w"):
        self.log = tmp / f"worker-{name}.log"
        self.name = name
        full_env = {**os.environ, "LOCPIPE_BROKER_URL": broker, **env}
        self.proc = subprocess.Popen([LOCPIPE, "--log-level", "INFO", "farm", "worker", "--queues", queues,
                                      "--concurrency", str(concurrency), "--hostname", f"{name}@%h"],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker {self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if " ready." in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        pytest.fail(f"worker {self.name} not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def owns(self, pid: int) -> bool:
        try:
            return os.getpgid(pid) == self.proc.pid
        except ProcessLookupError:
            return False

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: a machine or container dying."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass


@pytest.fixture
def redis_server(tmp_path):
    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(broker: str, queues: str, env: dict, **kw) -> Worker:
        w = Worker(tmp_path, broker, queues, env, name=f"w{len(started)}", **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def farm(*args: str, broker: str, env: dict | None = None, check: bool = True, timeout: float = 600):
    proc = subprocess.run([LOCPIPE, "--log-level", "INFO", "farm", *args, "--broker", broker], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def wait_for(predicate, timeout: float, what: str, logs: list[Path] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs if p.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def records(out: Path, prefix: str = "") -> dict:
    return {r.unit_id: r for r in FarmState(out).records() if r.unit_id.startswith(prefix)}


def assert_exactly_once(out: Path, ids: list[str]) -> None:
    recs = records(out)
    for uid in ids:
        rec = recs[uid]
        assert rec.status == "ok" and rec.commits == 1, (uid, rec.status, rec.commits, rec.attempts, rec.error)
    files = sorted(p.name for p in (out / "drill").iterdir())
    assert files == sorted(f"{uid}.txt" for uid in ids)  # one output per unit, no temporaries left
    assert all((out / "drill" / f"{uid}.txt").read_text() == f"{uid}\n" for uid in ids)


# --------------------------------------------------------------------------- without a broker


def test_units_are_deterministic_and_refuse_a_different_worker_config(tmp_path, sample):
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(sample, series / "ep001.mp4")
    shutil.copy(sample, series / "ep002.mp4")
    kw = dict(out_dir=tmp_path / "out", work_dir=tmp_path / "work", config_dir=DEFAULT_CONFIG_DIR)
    plan = plan_units([series], ["us", "us-social"], distributor="acme", **kw)
    again = plan_units([series], ["us", "us-social"], distributor="acme", **kw)
    other = plan_units([series], ["us", "us-social"], distributor="zeta", **kw)
    ids = [u.unit_id for ep in plan for u in ep.units]
    assert ids == [u.unit_id for ep in again for u in ep.units]
    assert len(set(ids)) == 4 and ids[0].startswith("ep001--us--")
    assert not set(ids) & {u.unit_id for ep in other for u in ep.units}  # the distributor is part of the unit

    cfg = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, cfg)
    unit = plan[0].units[0].model_copy(update={"config_dir": str(cfg)})
    assert run_settings(unit).markets[0].code == "us"
    path = cfg / "markets" / "us.yaml"
    path.write_text(path.read_text().replace("integrated: -14", "integrated: -15"))
    with pytest.raises(ConfigError, match="config hash"):
        run_settings(unit)


def test_settings_keep_backoff_below_the_visibility_timeout():
    s = load_settings("redis://h:6379/0", environ={"LOCPIPE_FARM_RETRY_BASE": "10"})
    assert [s.backoff(n) for n in (1, 2, 3)] == [10, 20, 40]
    with pytest.raises(ConfigError, match="visibility timeout"):
        load_settings("redis://h:6379/0", environ={"LOCPIPE_FARM_VISIBILITY_TIMEOUT": "60"})
    with pytest.raises(ConfigError, match="LOCPIPE_BROKER_URL"):
        load_settings(None, environ={})
    with pytest.raises(ConfigError, match="not a number"):
        load_settings("redis://h", environ={"LOCPIPE_FARM_MAX_ATTEMPTS": "three"})


def test_protocol_noop_busy_retry_and_dead_letter(tmp_path):
    """The unit protocol in process: a done unit is a no-op, a locked one busy, a failing one dead-lettered."""
    settings = FarmSettings(broker_url="redis://unused", retry_base=0.0, max_attempts=3)
    out = tmp_path / "out"
    state = FarmState(out)
    ok = DrillSpec(unit_id="u-ok", out_dir=str(out), seconds=0)
    assert drill_phase(settings, ok).kind == "done"
    assert drill_phase(settings, ok).kind == "noop"
    assert (state.load("u-ok").commits, state.load("u-ok").noops) == (1, 1)
    (out / "drill" / "u-ok.txt").unlink()  # an export that went missing is made again
    assert drill_phase(settings, ok).kind == "done" and state.load("u-ok").commits == 2

    with state.lock("u-busy"):  # another worker holds the unit
        assert drill_phase(settings, DrillSpec(unit_id="u-busy", out_dir=str(out), seconds=0)).kind == "busy"

    bad = DrillSpec(unit_id="u-bad", out_dir=str(out), seconds=0, fail_first=99)
    kinds = [drill_phase(settings, bad).kind for _ in range(3)]
    assert kinds == ["retry", "retry", "dead"]
    dead = json.loads((out / ".locpipe-farm" / "dead" / "u-bad.json").read_text())
    assert dead["attempts"] == 3 and "drill failure on attempt 3" in dead["error"]
    assert dead["unit"]["unit_id"] == "u-bad"
    assert state.load("u-bad").status == "failed" and not (out / "drill" / "u-bad.txt").exists()
    assert drill_phase(settings, bad).kind == "dead" and state.load("u-bad").attempts == {"drill": 3}  # redelivered
    assert state.reset_failed("u-bad") and state.load("u-bad").attempts == {}


def test_an_unreadable_episode_dead_letters_each_of_its_units(tmp_path):
    from locpipe.farm.phases import asr_phase

    series = tmp_path / "series"
    series.mkdir()
    (series / "ep009.mp4").write_text("not a video")
    out = tmp_path / "out"
    (plan,) = plan_units([series], ["us", "us-social"], out_dir=out, work_dir=tmp_path / "work",
                         config_dir=DEFAULT_CONFIG_DIR)
    settings = FarmSettings(broker_url="redis://unused", retry_base=0.0, max_attempts=2)
    assert [asr_phase(settings, plan).kind for _ in range(2)] == ["retry", "dead"]
    for unit in plan.units:
        dead = json.loads((out / ".locpipe-farm" / "dead" / f"{unit.unit_id}.json").read_text())
        assert dead["phase"] == "asr" and dead["attempts"] == 2 and "ep009.mp4" in dead["error"]
        assert FarmState(out).load(unit.unit_id).status == "failed"


def test_stale_export_temporaries_of_the_unit_only_are_removed(tmp_path):
    names = [".ep001.mp4.12.tmp", ".ep001.qc.json.3.tmp", ".ep001.en.srt.4.tmp", ".ep001.5.mp4.6.tmp",
             ".ep001.5.qc.json.7.tmp", ".ep0010.mp4.8.tmp", ".ep001.pt-BR.srt.9.tmp", "ep001.mp4"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path, "ep001", "en") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


# --------------------------------------------------------------------------- real Redis, real workers


def test_two_workers_run_every_unit_once_even_when_one_is_killed_mid_unit(tmp_path, redis_server, workers):
    out = tmp_path / "out"
    w0 = workers(redis_server.url, "render", DRILL_ENV).wait_ready()
    w1 = workers(redis_server.url, "render", DRILL_ENV).wait_ready()
    ids = [json.loads(line)["unit"] for line in farm("drill", "--out", str(out), "--units", "6", "--seconds", "2",
                                                      "--prefix", "k", broker=redis_server.url).stdout.splitlines()]
    assert len(ids) == 6
    logs = [w0.log, w1.log]
    running = wait_for(lambda: next((r for r in records(out, "k").values() if r.status == "running" and r.pid), None),
                       60, "a running unit", logs)
    victim = w0 if w0.owns(running.pid) else w1
    assert victim.owns(running.pid)
    victim.kill()  # mid-unit: the unit's lock dies with it, its message stays unacknowledged

    wait_for(lambda: all(r.status == "ok" for r in records(out, "k").values()) and len(records(out, "k")) == 6,
             120, "every unit ok after the kill", logs)
    assert_exactly_once(out, ids)
    rec = records(out)[running.unit_id]
    assert rec.attempts["drill"] >= 2  # redelivered to the surviving worker and run again
    survivor = w1 if victim is w0 else w0
    assert survivor.proc.poll() is None


def test_a_killed_pool_process_puts_its_unit_back_at_once(tmp_path, redis_server, workers):
    out = tmp_path / "out"
    env = {**DRILL_ENV, "LOCPIPE_FARM_VISIBILITY_TIMEOUT": "300"}  # only reject-on-worker-lost can bring it back
    w = workers(redis_server.url, "render", env, concurrency=2).wait_ready()
    ids = [json.loads(line)["unit"] for line in farm("drill", "--out", str(out), "--units", "3", "--seconds", "2",
                                                      "--prefix", "p", broker=redis_server.url).stdout.splitlines()]
    running = wait_for(lambda: next((r for r in records(out, "p").values() if r.status == "running" and r.pid), None),
                       60, "a running unit", [w.log])
    os.kill(running.pid, signal.SIGKILL)  # the pool process (OOM killer style); the worker lives on
    wait_for(lambda: len(records(out, "p")) == 3 and all(r.status == "ok" for r in records(out, "p").values()),
             90, "every unit ok after the pool process died", [w.log])
    assert_exactly_once(out, ids)
    assert records(out)[running.unit_id].attempts["drill"] == 2
    assert "WorkerLostError" in w.log.read_text() or "exited with 'signal 9" in w.log.read_text()


def test_units_survive_a_redis_kill_and_restart(tmp_path, redis_server, workers):
    out = tmp_path / "out"
    w0 = workers(redis_server.url, "render", DRILL_ENV).wait_ready()
    w1 = workers(redis_server.url, "render", DRILL_ENV).wait_ready()
    ids = [json.loads(line)["unit"] for line in farm("drill", "--out", str(out), "--units", "8", "--seconds", "1.5",
                                                      "--prefix", "r", broker=redis_server.url).stdout.splitlines()]
    wait_for(lambda: any(r.status == "running" for r in records(out, "r").values()), 60, "work to start",
             [w0.log, w1.log])
    redis_server.kill()  # queued units exist only in Redis (append-only file, fsync per write)
    time.sleep(2)
    redis_server.start()
    wait_for(lambda: len(records(out, "r")) == 8 and all(r.status == "ok" for r in records(out, "r").values()),
             120, "every unit ok after the Redis restart", [w0.log, w1.log])
    assert_exactly_once(out, ids)
    assert w0.proc.poll() is None and w1.proc.poll() is None
    status = json.loads(farm("status", "--out", str(out), "--json", broker=redis_server.url).stdout)
    assert status["counts"] == {"done": 8} and set(status["queues"]) == {"asr", "tts", "render"}


def test_status_lists_every_unit_and_shows_a_dead_workers_unit_as_lost_until_it_is_requeued(tmp_path, redis_server,
                                                                                            workers):
    """queued before any worker, running with its node and lease age, lost once that node's lease
    expired (no other worker runs a reaper here), then requeued by `farm status` itself."""
    out = tmp_path / "out"
    ids = [json.loads(line)["unit"] for line in farm("drill", "--out", str(out), "--units", "2", "--seconds", "8",
                                                      "--prefix", "s", broker=redis_server.url).stdout.splitlines()]

    def status(*extra: str) -> dict:
        return json.loads(farm("status", "--out", str(out), "--json", *extra, broker=redis_server.url,
                               env=DRILL_ENV).stdout)

    w = workers(redis_server.url, "render", DRILL_ENV).wait_ready()
    running = wait_for(lambda: next((r for r in records(out, "s").values() if r.status == "running"), None), 60,
                       "a running unit", [w.log])
    view = {u["unit"]: u for u in status("--no-reap")["units"]}
    assert view[running.unit_id]["state"] == "running" and view[running.unit_id]["node"].startswith("w0@")
    assert 0 <= view[running.unit_id]["lease_age"] < 4 and view[running.unit_id]["since"]
    assert len(view) == 2  # the drill's other unit is listed too (queued on the broker)
    w.kill()
    lost = wait_for(lambda: (lambda v: v if v[running.unit_id]["state"] == "lost" else None)(
        {u["unit"]: u for u in status("--no-reap")["units"]}), 30, "the unit shown as lost")
    assert lost[running.unit_id]["lease_age"] >= 4
    snap = wait_for(lambda: (lambda s: s if s["requeued"] else None)(status()), 30, "status to requeue it")
    assert [r["unit"] for r in snap["requeued"]] == [running.unit_id] and snap["queues"]["render"] >= 1
    w2 = workers(redis_server.url, "render", DRILL_ENV, concurrency=2).wait_ready()
    wait_for(lambda: all(records(out)[i].status == "ok" for i in ids), 120, "both units done", [w2.log])
    assert status()["counts"] == {"done": 2} and records(out)[running.unit_id].commits == 1


def test_dead_letter_after_bounded_retries_while_other_units_finish(tmp_path, redis_server, workers):
    out = tmp_path / "out"
    w = workers(redis_server.url, "render", DRILL_ENV, concurrency=2).wait_ready()
    proc = farm("drill", "--out", str(out), "--units", "1", "--seconds", "0.2", "--fail-first", "9", "--prefix",
                "bad", "--wait", "--timeout", "90", broker=redis_server.url, check=False)
    assert proc.returncode == 3, proc.stderr + w.log.read_text()[-2000:]
    farm("drill", "--out", str(out), "--units", "2", "--seconds", "0.2", "--prefix", "good", "--wait",
         "--timeout", "90", broker=redis_server.url)
    dead = json.loads((out / ".locpipe-farm" / "dead" / "bad-000.json").read_text())
    assert dead["attempts"] == 3 and dead["phase"] == "drill" and "attempt 3" in dead["error"]
    assert records(out)["good-000"].status == "ok" and records(out)["bad-000"].status == "failed"


# --------------------------------------------------------------------------- one real unit end to end


def _edit(path: Path, *pairs: tuple[str, str]) -> None:
    text = path.read_text()
    for old, new in pairs:
        assert old in text, f"{path}: {old!r} not found (the bundled config changed: update this test)"
        text = text.replace(old, new)
    path.write_text(text)


def small_configs(dst: Path) -> Path:
    """The bundled configs with the social profile at a third of the size: a cheap real render."""
    shutil.copytree(DEFAULT_CONFIG_DIR, dst)
    _edit(dst / "profiles" / "social.yaml", ("width: 1080", "width: 360"), ("height: 1920", "height: 640"),
          ("preset: veryfast", "preset: ultrafast"),
          ("safe_zone: {x0: 65, y0: 269, x1: 1015, y1: 1248}", "safe_zone: {x0: 22, y0: 90, x1: 338, y1: 416}"))
    _edit(dst / "markets" / "us-social.yaml", ("size: 54", "size: 18"), ("margin_bottom: 700", "margin_bottom: 233"),
          ("margin_sides: 90", "margin_sides: 30"))
    return dst


@pytest.mark.slow
def test_sample_units_run_across_an_asr_worker_and_a_render_worker_exactly_once(tmp_path, redis_server, workers):
    series = tmp_path / "series"
    series.mkdir()
    cut_sample(series / "ep001.mp4", 0.0, 8.0)
    cfg = small_configs(tmp_path / "configs")
    # a second market in the same language: the episode's asr phase serves both
    (cfg / "markets" / "us-social-b.yaml").write_text(
        (cfg / "markets" / "us-social.yaml").read_text().replace("size: 18", "size: 20"))
    out = tmp_path / "shared" / "out"
    env = {"LOCPIPE_CONFIG_DIR": str(cfg), "LOCPIPE_FARM_VISIBILITY_TIMEOUT": "1800"}
    gpu = workers(redis_server.url, "asr", env).wait_ready()
    cpu = workers(redis_server.url, "tts,render", env).wait_ready()
    args = ("submit", str(series), "--markets", "us-social,us-social-b", "--out", str(out), "--work",
            str(tmp_path / "shared" / "work"), "--distributor", "acme", "--wait", "--timeout", "900")
    proc = farm(*args, broker=redis_server.url, env={"LOCPIPE_CONFIG_DIR": str(cfg)}, check=False)
    assert proc.returncode == 0, proc.stderr + gpu.log.read_text()[-3000:] + cpu.log.read_text()[-3000:]
    ids = [json.loads(line)["unit"] for line in proc.stdout.splitlines()]
    assert [i.rsplit("--", 1)[0] for i in ids] == ["ep001--us-social", "ep001--us-social-b"]

    # each phase ran on the worker of its queue; transcription once for both markets
    assert gpu.log.read_text().count("ep001--asr: asr attempt") == 1
    cpu_log = cpu.log.read_text()
    for uid in ids:
        assert f"{uid}: tts attempt 1/3" in cpu_log and f"{uid}: render attempt 1/3" in cpu_log
        rec = records(out)[uid]
        assert rec.status == "ok" and rec.commits == 1 and set(rec.attempts) == {"tts", "render"}
        exports = sorted(p.name for p in (out / rec.market).iterdir())
        assert {"ep001.en.srt", "ep001.en.vtt", "ep001.mp4", "ep001.qc.json"} <= set(exports)
        assert not [n for n in exports if n.startswith(".") or n.endswith(".tmp")]  # no temporaries
        assert sorted(Path(p).name for p in rec.outputs.values()) == exports
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(u["episode"], u["market"], u["status"]) for u in manifest["units"]] == [
        ("ep001", "us-social", "ok"), ("ep001", "us-social-b", "ok")]
    unit = manifest["units"][0]
    assert unit["export_id"] == records(out)[ids[0]].export_id
    cached = {s["stage"]: s["cached"] for s in unit["stages"]}
    assert cached["translate"] and cached["mix"] and not cached["render"]  # tts work was reused, not redone
    assert all(s["cached"] for s in manifest["episodes"][0]["shared_stages"])  # the asr worker's transcript

    # submitting again is a no-op: still one export and one commit per unit
    mtime = (out / "us-social" / "ep001.mp4").stat().st_mtime_ns
    farm(*args, broker=redis_server.url, env={"LOCPIPE_CONFIG_DIR": str(cfg)})
    wait_for(lambda: all(records(out)[i].noops >= 1 for i in ids), 120, "the resubmitted units to be seen as done",
             [gpu.log, cpu.log])
    assert [records(out)[i].commits for i in ids] == [1, 1]
    assert (out / "us-social" / "ep001.mp4").stat().st_mtime_ns == mtime

    # the manifest is a view of the unit records: it can be rebuilt from them
    (out / "manifest.json").unlink()
    farm("status", "--out", str(out), "--rebuild-manifest", broker=redis_server.url)
    rebuilt = json.loads((out / "manifest.json").read_text())
    assert [(u["market"], u["export_id"]) for u in rebuilt["units"]] == [
        (u["market"], u["export_id"]) for u in manifest["units"]]


def test_compose_file_runs_redis_two_workers_and_a_submit_job_with_valid_commands():
    import yaml
    from conftest import ROOT

    from locpipe.cli import build_parser

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "redis" in services and "--appendonly" in services["redis"]["command"]
    assert '["locpipe"]' in (ROOT / "Dockerfile").read_text()  # so `command:` is a locpipe command line
    queues = []
    for name in ("worker-asr", "worker-render", "submit"):
        svc = services[name]
        assert svc["build"] == "." and svc["environment"]["LOCPIPE_BROKER_URL"].startswith("redis://redis:")
        args = build_parser().parse_args(svc["command"])
        assert args.command == "farm"
        if args.farm_command == "worker":
            queues += args.queues.split(",")
    assert sorted(queues) == ["asr", "render", "tts"]
    submit = build_parser().parse_args(services["submit"]["command"])
    mounts = {v.split(":")[1] for v in services["submit"]["volumes"]}
    assert submit.farm_command == "submit" and {str(submit.out), str(submit.work), str(submit.inputs[0])} <= mounts
    assert services["worker-asr"]["volumes"] == services["worker-render"]["volumes"] == services["submit"]["volumes"]


# --------------------------------------------------------------------------- SIGKILL in every phase of a real unit


def small_app_configs(dst: Path) -> Path:
    """``small_configs`` plus the app profile (forensic mark on) at 360x640: `us` is a cheap real unit
    with a dub (a tts phase worth killing) and a ledger payload (a serial that must stay unique)."""
    small_configs(dst)
    _edit(dst / "profiles" / "app.yaml", ("width: 1080", "width: 360"), ("height: 1920", "height: 640"),
          ("preset: veryfast", "preset: ultrafast"),
          ("safe_zone: {x0: 60, y0: 160, x1: 1020, y1: 1728}", "safe_zone: {x0: 20, y0: 53, x1: 340, y1: 576}"))
    _edit(dst / "markets" / "us.yaml", ("size: 62", "size: 21"), ("margin_bottom: 230", "margin_bottom: 77"))
    return dst


def _ledger_rows(path: Path) -> list[tuple]:
    import sqlite3

    if not path.is_file():
        return []
    con = sqlite3.connect(path, timeout=30)
    try:
        return con.execute("SELECT episode, market, distributor, export_id, serial, state FROM payloads").fetchall()
    except sqlite3.OperationalError:  # being created by the render right now
        return []
    finally:
        con.close()


@pytest.mark.slow
def test_a_worker_sigkilled_in_asr_tts_and_render_loses_nothing_and_nothing_happens_twice(tmp_path, redis_server,
                                                                                          workers):
    """One real unit (6 s episode, market `us` at 360x640): the worker running it is SIGKILLed
    (with its pool process and ffmpeg) once in each phase, asr, tts and render (after the
    render issued its forensic payload). Each time another worker takes the unit over through
    the dead worker's expired lease (the visibility timeout is an hour), and in the end there
    is one export, one commit and one ledger serial, final, for the export."""

    series = tmp_path / "series"
    series.mkdir()
    cut_sample(series / "ep001.mp4", 0.0, 6.0)
    cfg = small_app_configs(tmp_path / "configs")
    # a house ledger of this test alone: the session's is shared with every other test's exports
    out, ledger = tmp_path / "out", (tmp_path / "house" / "forensic-ledger.sqlite").resolve()
    env = {**DRILL_ENV, "LOCPIPE_CONFIG_DIR": str(cfg), "LOCPIPE_LEDGER": str(ledger)}
    pool = [workers(redis_server.url, "asr,tts,render", env), workers(redis_server.url, "asr,tts,render", env)]
    for w in pool:
        w.wait_ready()
    proc = farm("submit", str(series), "--markets", "us", "--out", str(out), "--no-ocr", "--distributor", "acme",
                broker=redis_server.url, env={"LOCPIPE_CONFIG_DIR": str(cfg), "LOCPIPE_LEDGER": str(ledger)})
    (uid,) = [json.loads(line)["unit"] for line in proc.stdout.splitlines()]
    status = json.loads(farm("status", "--out", str(out), "--json", broker=redis_server.url).stdout)
    assert {u["unit"]: u["state"] for u in status["units"]}[uid] in ("queued", "running")  # listed before it runs

    def logs() -> list[Path]:
        return [w.log for w in pool]

    for phase, rec_id in (("asr", "ep001--asr"), ("tts", uid), ("render", uid)):
        def running(phase=phase, rec_id=rec_id):
            rec = records(out).get(rec_id)
            if rec is None or rec.status != "running" or rec.phase != phase or not rec.pid:
                return None
            if phase == "render" and not any(r[5] == "pending" for r in _ledger_rows(ledger)):
                return None  # kill once the payload is issued and the encode runs
            return rec

        rec = wait_for(running, 240, f"the {phase} phase to run", logs())
        victim = next(w for w in pool if w.proc.poll() is None and w.owns(rec.pid))
        victim.kill()
        pool.append(workers(redis_server.url, "asr,tts,render", env))  # the farm gets a node back
        wait_for(lambda rec_id=rec_id, phase=phase: records(out)[rec_id].attempts.get(phase, 0) >= 2,
                 180, f"the {phase} phase taken over after the kill", logs())

    wait_for(lambda: records(out)[uid].status == "ok", 300, "the unit exported", logs())
    rec = records(out)[uid]
    assert rec.commits == 1 and rec.attempts == {"tts": 2, "render": 2}, rec
    assert records(out)["ep001--asr"].attempts == {"asr": 2}
    exports = sorted(p.name for p in (out / "us").iterdir())
    assert exports == ["ep001.en.ass", "ep001.en.srt", "ep001.en.vtt", "ep001.mp4", "ep001.qc.json"]
    rows = [r for r in _ledger_rows(ledger) if r[0] == "ep001" and r[1] == "us"]
    assert [(r[2], r[3], r[5]) for r in rows] == [("acme", rec.export_id, "final")], rows  # one serial, final
    requeued = [line for w in pool for line in w.log.read_text(errors="replace").splitlines() if "requeued" in line]
    assert len(requeued) >= 3, requeued  # each takeover came from a reaper, not the visibility timeout


@pytest.mark.slow
def test_ab_distributors_render_one_base_per_market_and_a_small_copy_unit_each(tmp_path, redis_server, workers):
    """`farm submit --distributor a,b,c`: like `run`, the market's A/B base is rendered once (its own
    unit) and each distributor's copy is a unit that renders only its windows and assembles the rest."""
    series = tmp_path / "series"
    series.mkdir()
    cut_sample(series / "ep001.mp4", 0.0, 6.0)
    cfg = small_app_configs(tmp_path / "configs")
    out, ledger = tmp_path / "out", tmp_path / "ledger.sqlite"
    env = {**DRILL_ENV, "LOCPIPE_CONFIG_DIR": str(cfg)}
    w = workers(redis_server.url, "asr,tts,render", env, concurrency=2).wait_ready()
    proc = farm("submit", str(series), "--markets", "us", "--out", str(out), "--no-ocr", "--ledger", str(ledger),
                "--distributor", "ReelCo,DramaHub,ShortMax", "--wait", "--timeout", "600", broker=redis_server.url,
                env={"LOCPIPE_CONFIG_DIR": str(cfg)}, check=False)
    assert proc.returncode == 0, proc.stderr + w.log.read_text()[-4000:]
    ids = [json.loads(line)["unit"] for line in proc.stdout.splitlines()]
    recs = records(out)
    (base,) = [r for r in recs.values() if r.role == "ab-base"]
    assert base.status == "ok" and base.commits == 1 and base.unit_id.endswith("--ab")
    copies = {recs[i].distributor: recs[i] for i in ids}
    assert sorted(copies) == ["DramaHub", "ReelCo", "ShortMax"]
    manifest = {u["distributor"]: u for u in json.loads((out / "manifest.json").read_text())["units"]}
    for name, rec in copies.items():
        assert rec.role == "ab-copy" and rec.status == "ok" and rec.commits == 1, rec
        assert rec.outputs["video"] == str(out / "us" / name / "ep001.mp4") and Path(rec.outputs["video"]).is_file()
        stages = {s["stage"]: s["cached"] for s in manifest[name]["stages"]}
        assert stages["render_ab"] and not stages["render"]  # the base is reused; only the copy is made here
    import sqlite3

    con = sqlite3.connect(ledger)
    batches = con.execute("SELECT payload_hex, state FROM payloads WHERE distributor = 'ab-batch:us'").fetchall()
    members = con.execute("SELECT distributor FROM ab_members ORDER BY idx").fetchall()
    con.close()
    assert len(batches) == 1 and batches[0][1] == "final"  # one batch payload for the market, however many copies
    assert sorted(m[0] for m in members) == ["DramaHub", "ReelCo", "ShortMax"]
