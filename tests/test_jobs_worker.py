"""Jobs end to end: submit, workers (in this process and as real processes), cancel,
kill -9, a folder made read-only mid-batch, and 200 renders through two workers."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from facetalk.context import RunContext
from facetalk.errors import Cancelled, NoFaceError, OutputError
from facetalk.jobs.outputs import default_output
from facetalk.jobs.runner import StoreProgress, prepare_request, run_in_process
from facetalk.jobs.store import JobState, JobStore
from facetalk.jobs.worker import Worker
from facetalk.pipeline import RenderRequest

from .cli_helpers import assert_one_line_error, run_cli
from .conftest import espeak, read_wav, write_wav


@pytest.fixture(scope="module")
def jm(tmp_path_factory) -> dict:
    """A face filling a small photo, short speech, 10 s and 30 s of speech, a photo with no face."""
    d = tmp_path_factory.mktemp("jobs-media")
    face = d / "face.png"
    Image.fromarray(skimage.data.astronaut()[20:276, 110:366]).resize((160, 160), Image.LANCZOS).save(face)
    short = espeak("Hi", d / "short.wav", speed=170)
    hello = espeak("Hello there, nice to meet you.", d / "hello.wav")
    samples, sr = read_wav(hello)
    reps = int(np.ceil(30 * sr / (len(samples) + sr // 2)))
    phrase = np.concatenate([samples, np.zeros(sr // 2, np.float32)])
    long = write_wav(d / "long.wav", np.concatenate([phrase] * reps), sr)
    medium = write_wav(d / "medium.wav", np.concatenate([phrase] * max(1, reps // 3)), sr)
    no_face = d / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(no_face)
    return {"dir": d, "face": face, "short": short, "hello": hello, "medium": medium, "long": long,
            "no_face": no_face}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("FACETALK_HOME", str(h))
    return h


def submit(store: JobStore, home: Path, **request) -> str:
    d, versions = prepare_request(RenderRequest(**{"output": None, **request}), home)
    return store.submit(d, versions=versions).id


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()] if folder.exists() else []


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_worker(home: Path, *args: str, log: Path, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "facetalk", "worker", "--home", str(home), "--poll", "0.1", *args],
                            env={**os.environ, "FACETALK_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), preexec_fn=preexec_fn)  # noqa: PLW1509 - only drops a capability


def executions(home: Path, job_id: str) -> int:
    """Runs of a job, counted from the marker line each execution writes to the job log."""
    return (home / "logs" / "jobs" / f"{job_id}.log").read_text().count("execution started")


# -- the command line ---------------------------------------------------------------------

def test_submit_worker_and_the_jobs_commands(capsys, jm, home, tmp_path):
    code, out, err = run_cli(capsys, "jobs", "submit", "--face", jm["face"], "--audio", jm["short"], "--name", "first try")
    assert code == 0, err
    first = out.split()[2]
    assert "first-try" in out and str(home / "outputs") in out
    mine = tmp_path / "mine.mp4"
    code, out, err = run_cli(capsys, "jobs", "submit", "--face", jm["face"], "--audio", jm["short"], "-o", mine, "--quiet")
    assert code == 0, err
    second = out.strip()

    code, out, err = run_cli(capsys, "worker", "--once", "--quiet")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "jobs", "list", "--json")
    jobs = {j["id"]: j for j in json.loads(out)}
    assert set(jobs) == {first, second} and all(j["state"] == "succeeded" and j["attempts"] == 1 for j in jobs.values())

    store = JobStore.at_home(home)
    job = store.get(first)
    video = default_output(home, job)
    assert video.name == f"{first}-first-try.mp4" and video.parent.name == time.strftime("%Y-%m-%d", time.localtime(job.created))
    assert job.outputs == [str(video), str(video.with_suffix(".json"))]
    side = json.loads(video.with_suffix(".json").read_text())
    assert side["kind"] == "facetalk-render" and side["job"] == first and side["request"]["face"] == str(jm["face"])
    assert side["result"]["n_frames"] == job.metrics["n_frames"] > 5 and side["versions"]["facetalk"]
    assert mine.is_file() and json.loads(mine.with_suffix(".json").read_text())["job"] == second
    assert not hidden_files(home / "outputs") and not hidden_files(tmp_path)

    code, out, err = run_cli(capsys, "jobs", "list")
    assert code == 0 and first in out and "succeeded" in out and "1/3" in out
    code, out, _ = run_cli(capsys, "jobs", "show", first[-6:])
    assert code == 0 and "state:     succeeded" in out and str(video) in out and "attempt 1/3 started" in out
    code, out, err = run_cli(capsys, "jobs", "watch", first)
    assert code == 0 and "succeeded" in out
    code, out, _ = run_cli(capsys, "jobs", "log", first)
    assert code == 0 and out.count("execution started") == 1 and "stage render" in out and "execution finished" in out

    code, out, err = run_cli(capsys, "outputs", "zip", "--since", "today", "-o", tmp_path / "pack.zip")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "pack.zip") as z:
        assert sorted(Path(n).name for n in z.namelist()) == sorted([video.name, video.with_suffix(".json").name])
        assert z.read(z.namelist()[1 if z.namelist()[0].endswith(".json") else 0]) == video.read_bytes()
    line = assert_one_line_error(*run_cli(capsys, "outputs", "zip", "--since", "today", "-o", tmp_path / "pack.zip")[::2])
    assert "--force" in line
    assert run_cli(capsys, "outputs", "zip", "--since", "2020-01-01", "--until", "today", "-o", tmp_path / "pack.zip", "--force")[0] == 0
    assert "no outputs" in assert_one_line_error(*run_cli(capsys, "outputs", "zip", "--since", "2020-01-01", "--until", "2020-01-02", "-o", tmp_path / "old.zip")[::2])

    assert "already succeeded" in assert_one_line_error(*run_cli(capsys, "jobs", "cancel", first)[::2])
    code, out, _ = run_cli(capsys, "jobs", "clean", "--older-than", "1h")
    assert code == 0 and "removed 0" in out
    code, out, _ = run_cli(capsys, "jobs", "clean", "--older-than", "0s")
    assert code == 0 and "removed 2" in out
    assert store.list() == [] and video.is_file() and not (home / "logs" / "jobs" / f"{first}.log").exists()
    assert (home / "logs" / "facetalk.log").read_text().count("succeeded") == 2


def test_submit_checks_the_input_at_once(capsys, jm, home, tmp_path):
    cases = [
        (["--face", jm["dir"] / "nope.png", "--audio", jm["short"]], "nope.png"),
        (["--face", jm["face"], "--audio", jm["face"]], ".png"),
        (["--identity", "nobody", "--audio", jm["short"]], "unknown identity 'nobody'"),
        (["--audio", jm["short"]], "--face"),
        (["--face", jm["face"], "--audio", jm["short"], "-o", tmp_path / "missing" / "x.mp4"], "does not exist"),
        (["--face", jm["face"], "--audio", jm["short"], "-o", tmp_path / "x.mov"], ".mp4"),
        (["--face", jm["face"], "--audio", jm["short"], "--renderer", "retrieval"], "identity"),
        (["--face", jm["face"], "--audio", jm["short"], "--renderer", "magic"], "unknown renderer"),
        (["--face", jm["face"], "--audio", jm["short"], "--fps", "500"], "--fps"),
    ]
    for args, words in cases:
        line = assert_one_line_error(*run_cli(capsys, "jobs", "submit", *args)[::2])
        assert words.lower() in line.lower(), (args, line)
    assert JobStore.at_home(home).list() == []
    assert "no job 'zzz'" in assert_one_line_error(*run_cli(capsys, "jobs", "show", "zzz")[::2])
    assert "duration" in assert_one_line_error(*run_cli(capsys, "jobs", "clean", "--older-than", "soon")[::2])


def test_watch_fails_with_the_jobs_error(capsys, jm, home):
    store = JobStore.at_home(home)
    job_id = submit(store, home, face=str(jm["no_face"]), audio=str(jm["short"]))
    assert run_cli(capsys, "worker", "--once", "--quiet")[0] == 0
    job = store.get(job_id)
    assert job.state == JobState.FAILED and job.attempts == 1  # bad input is never retried
    line = assert_one_line_error(*run_cli(capsys, "jobs", "watch", job_id, "--quiet")[::2])
    assert job_id in line and "failed" in line and "no face found" in line and "coffee.jpg" in line
    assert not hidden_files(home / "outputs")

    assert "queued again" in run_cli(capsys, "jobs", "retry", job_id)[1]
    assert store.get(job_id).state == JobState.QUEUED and store.get(job_id).attempts == 0
    assert "cancelled" in run_cli(capsys, "jobs", "cancel", job_id)[1]
    line = assert_one_line_error(*run_cli(capsys, "jobs", "watch", job_id, "--quiet")[::2])
    assert "cancelled" in line and store.claim("w") is None


# -- facetalk render as a job ----------------------------------------------------------------

def test_render_in_process_is_a_job(jm, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    ctx = RunContext(progress=lambda stage, f, m: seen.append(stage))
    result = run_in_process(RenderRequest(face=str(jm["face"]), audio=str(jm["short"]), output="out.mp4"), home, ctx)
    assert result.output == Path("out.mp4") and (tmp_path / "out.mp4").is_file() and result.n_frames > 5
    assert {"speech", "face", "render"} <= set(seen)
    store = JobStore.at_home(home)
    [job] = store.list()
    assert job.state == JobState.SUCCEEDED and job.max_attempts == 1 and job.request["output"] == str(tmp_path / "out.mp4")
    assert job.metrics["n_frames"] == result.n_frames and job.worker.startswith("render-")
    assert json.loads((tmp_path / "out.json").read_text())["job"] == job.id

    # a file of the sidecar's name that facetalk did not write is left alone
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    ctx = RunContext()
    result = run_in_process(RenderRequest(face=str(jm["face"]), audio=str(jm["short"]), output="notes.mp4"), home, ctx)
    assert json.loads((tmp_path / "notes.json").read_text()) == {"mine": 1}
    assert any("notes.json" in w for w in ctx.warnings)

    with pytest.raises(NoFaceError, match="coffee.jpg"):
        run_in_process(RenderRequest(face=str(jm["no_face"]), audio=str(jm["short"]), output="bad.mp4"), home, RunContext())
    failed = store.list(state="failed")
    assert len(failed) == 1 and failed[0].attempts == 1 and "no face found" in failed[0].error
    assert not (tmp_path / "bad.mp4").exists() and not hidden_files(tmp_path)
    assert store.claim("worker") is None  # nothing is left for a worker to re-run


def test_render_in_process_stops_when_its_job_is_cancelled(jm, home, tmp_path):
    """`facetalk jobs cancel` from another terminal stops a `facetalk render` in a second."""
    store = JobStore.at_home(home)
    errors: list[BaseException] = []

    def render() -> None:
        try:
            run_in_process(RenderRequest(face=str(jm["face"]), audio=str(jm["long"]), output=str(tmp_path / "long.mp4")),
                           home, RunContext())
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            errors.append(e)

    thread = threading.Thread(target=render)
    thread.start()
    job = wait_for(lambda: (js := store.list()) and js[0].stage == "render" and js[0].progress > 0.02 and js[0], 60, "the render")
    t0 = time.monotonic()
    store.cancel(job.id)
    thread.join(timeout=10)
    assert time.monotonic() - t0 < 2.0 and not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert store.get(job.id).state == JobState.CANCELLED
    assert not (tmp_path / "long.mp4").exists() and not hidden_files(tmp_path)


# -- the runner's policy, with a stand-in executor -------------------------------------------

def test_retry_policy_and_progress(home):
    store = JobStore.at_home(home)
    calls: dict[str, int] = {}

    def executor(job, home_, ctx, models=None, cache=None):
        kind = job.request["kind"]
        calls[kind] = calls.get(kind, 0) + 1
        for i in range(2000):  # far more reports than the store should see
            ctx.report("render", i / 2000, "")
        if kind == "disk":
            raise OutputError("cannot write x.mp4: No space left on device (free some disk space)")
        if kind == "noface":
            raise NoFaceError("no face found in p.png")
        if kind == "bug" and calls[kind] == 1:
            raise ValueError("a bug\nwith two lines")
        return {"outputs": [f"/out/{job.id}.mp4"], "metrics": {"kind": kind}}

    ids = {k: store.submit({"kind": k, "output": None}).id for k in ("disk", "noface", "bug", "ok")}
    outcomes = Worker(home, once=True, executor=executor).run()
    assert calls == {"disk": 3, "noface": 1, "bug": 2, "ok": 1}
    jobs = {k: store.get(i) for k, i in ids.items()}
    assert jobs["disk"].state == JobState.FAILED and jobs["disk"].attempts == 3 and "No space left" in jobs["disk"].error
    assert jobs["noface"].state == JobState.FAILED and jobs["noface"].attempts == 1
    assert jobs["bug"].state == JobState.SUCCEEDED and jobs["bug"].attempts == 2
    assert jobs["ok"].state == JobState.SUCCEEDED and jobs["ok"].outputs == [f"/out/{ids['ok']}.mp4"]
    assert [o.state for o in outcomes].count("queued") == 3  # two disk retries, one bug retry
    bug_log = (home / "logs" / "jobs" / f"{ids['bug']}.log").read_text()
    assert "internal error: ValueError: a bug with two lines" in bug_log and "Traceback" in bug_log
    assert bug_log.count("execution started") == 2
    assert sum("failed" in e["message"] for e in store.events(ids["disk"])) == 3

    # progress: at most ~4 writes a second whatever the pipeline reports
    class Counting(JobStore):
        writes = 0

        def report(self, *a):
            Counting.writes += 1
            super().report(*a)

    counting = Counting.at_home(home)
    job = counting.submit({"output": None}, worker="w")
    progress = StoreProgress(counting, job.id, "w", logging.getLogger("test"))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        progress("render", (time.monotonic() - t0), "")
    progress("encode", 1.0, "")
    assert 2 <= Counting.writes <= 7
    assert counting.get(job.id).stage == "encode"


# -- real worker processes ------------------------------------------------------------------

def test_cancel_stops_a_running_render_and_sigterm_gives_the_job_back(jm, home, tmp_path):
    store = JobStore.at_home(home)
    a = submit(store, home, face=str(jm["face"]), audio=str(jm["long"]))
    b = submit(store, home, face=str(jm["face"]), audio=str(jm["long"]))
    worker = start_worker(home, "--quiet", log=tmp_path / "worker.log")
    try:
        wait_for(lambda: (j := store.get(a)).stage == "render" and j.progress > 0.02, 60, "job a to render")
        assert hidden_files(home / "outputs"), "the render writes a temporary file"
        cancelled_at = time.time()
        store.cancel(a)
        wait_for(lambda: store.get(b).state == JobState.RUNNING, 10, "the worker to move on to job b")
        moved_on = time.time()
        log = (home / "logs" / "jobs" / f"{a}.log").read_text()
        assert "execution stopped" in log and "cancelled" in log
        assert moved_on - cancelled_at < 2.0, f"the cancelled render ran on for {moved_on - cancelled_at:.2f} s"
        assert store.get(a).state == JobState.CANCELLED and not default_output(home, store.get(a)).exists()

        wait_for(lambda: (j := store.get(b)).stage == "render" and j.progress > 0.02, 30, "job b to render")
        worker.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert worker.wait(timeout=10) == 0
        assert time.monotonic() - stopped_at < 3.0
    finally:
        if worker.poll() is None:
            worker.kill()
    jb = store.get(b)
    assert jb.state == JobState.QUEUED and jb.attempts == 0 and jb.worker is None  # given back, not counted
    assert "given back" in store.events(b)[-1]["message"]
    assert not hidden_files(home / "outputs") and not list((home / "outputs").rglob("*.mp4"))


# The lease of the workers these tests kill: a dead worker's job is requeued once it runs
# out, so short keeps the tests quick; but a live worker must never lose it. Its renewals
# come from a thread that needs the GIL, which dlib holds through each detection call (up
# to 1.3 s on an idle machine): on a 2-core machine busy with other work, finding the face
# took over 10 s and a 4 s lease expired under a live render (the job ran three times).
# 20 s is twice that.
LEASE = "20"


def test_kill9_mid_render_the_job_runs_again_exactly_once(jm, home, tmp_path):
    store = JobStore.at_home(home)
    long_job = submit(store, home, face=str(jm["face"]), audio=str(jm["long"]))
    other = submit(store, home, face=str(jm["face"]), audio=str(jm["short"]))
    first = start_worker(home, "--quiet", "--lease", LEASE, "--once", log=tmp_path / "w1.log")
    try:
        wait_for(lambda: (j := store.get(long_job)).stage == "render" and j.progress > 0.05, 60, "the render")
        partial = wait_for(lambda: hidden_files(home / "outputs"), 5, "the temporary file")
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    assert all(p.exists() for p in partial), "kill -9 leaves the temporary file behind"
    assert store.get(long_job).state == JobState.RUNNING and store.get(other).state == JobState.QUEUED

    second = start_worker(home, "--quiet", "--lease", LEASE, log=tmp_path / "w2.log")
    try:
        wait_for(lambda: store.get(long_job).state.final and store.get(other).state.final, 180, "both jobs")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    finally:
        if second.poll() is None:
            second.kill()
    lj, oj = store.get(long_job), store.get(other)
    assert lj.state == JobState.SUCCEEDED and lj.attempts == 2, (lj, (tmp_path / "w2.log").read_text())
    assert oj.state == JobState.SUCCEEDED and oj.attempts == 1
    assert executions(home, long_job) == 2 and executions(home, other) == 1
    assert any(e["message"].startswith("requeued: worker") for e in store.events(long_job))
    videos = sorted((home / "outputs").rglob("*.mp4"))
    assert videos == sorted([default_output(home, lj), default_output(home, oj)])
    assert not hidden_files(home / "outputs"), "no partial file may remain"
    assert lj.metrics["n_frames"] > 600


def test_a_pool_replaces_a_killed_worker_and_its_job_runs_again(jm, home, tmp_path):
    store = JobStore.at_home(home)
    victim = submit(store, home, face=str(jm["face"]), audio=str(jm["medium"]))
    others = [submit(store, home, face=str(jm["face"]), audio=str(jm["short"])) for _ in range(4)]
    pool = start_worker(home, "--concurrency", "2", "--lease", LEASE, log=tmp_path / "pool.log")
    try:
        job = wait_for(lambda: (j := store.get(victim)).stage == "render" and j.progress > 0.05 and j, 60, "the render")
        pid = int(job.worker.split("-")[-2])  # worker-<host>-<pid>-<random>
        assert pid != pool.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(store.get(i).state.final for i in [victim, *others]), 180, "every job")
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=20) == 0
    finally:
        if pool.poll() is None:
            pool.kill()
    assert store.get(victim).state == JobState.SUCCEEDED and store.get(victim).attempts == 2
    assert store.get(victim).worker != job.worker
    assert all(store.get(i).state == JobState.SUCCEEDED and store.get(i).attempts == 1 for i in others)
    assert executions(home, victim) == 2 and all(executions(home, i) == 1 for i in others)
    assert f"worker process {pid} died (signal 9); starting another" in (tmp_path / "pool.log").read_text()
    assert len(list((home / "outputs").rglob("*.mp4"))) == 5 and not hidden_files(home / "outputs")


def _drop_dac_override() -> None:
    """In the child before exec: without CAP_DAC_OVERRIDE even root obeys a folder's mode."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_output_folder_mid_batch(jm, home, tmp_path):
    preexec = _drop_dac_override if os.geteuid() == 0 else None
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    try:
        writes = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1] + '/x', 'w')", str(probe)],
                                preexec_fn=preexec, capture_output=True, check=False)
    except OSError as e:
        pytest.skip(f"cannot drop root's permission override here: {e}")
    if writes.returncode == 0:
        pytest.skip("this user can write into a read-only folder")

    store = JobStore.at_home(home)
    first = submit(store, home, face=str(jm["face"]), audio=str(jm["short"]))
    slow = submit(store, home, face=str(jm["face"]), audio=str(jm["hello"]))
    target = submit(store, home, face=str(jm["face"]), audio=str(jm["short"]), output=str(ro / "target.mp4"))
    last = submit(store, home, face=str(jm["face"]), audio=str(jm["short"]))
    worker = start_worker(home, "--quiet", "--once", log=tmp_path / "worker.log", preexec_fn=preexec)
    try:
        wait_for(lambda: store.get(first).state == JobState.SUCCEEDED, 60, "the first job")
        assert store.get(target).state == JobState.QUEUED
        ro.chmod(0o555)  # mid-batch
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        ro.chmod(0o755)
    t = store.get(target)
    assert t.state == JobState.FAILED and t.attempts == 3, t
    assert "\n" not in t.error and str(ro) in t.error and "Permission denied" in t.error, t.error
    assert [store.get(i).state for i in (first, slow, last)] == [JobState.SUCCEEDED] * 3
    assert store.counts() == {"queued": 0, "running": 0, "succeeded": 3, "failed": 1, "cancelled": 0}
    assert list(ro.iterdir()) == []
    assert len(list((home / "outputs").rglob("*.mp4"))) == 3 and not hidden_files(home / "outputs")
    assert executions(home, target) == 3 and sum("failed" in e["message"] for e in store.events(target)) == 3


SUBMITTER = """
import json, sys
from facetalk.jobs.store import JobStore
store = JobStore.at_home(sys.argv[1])
request = json.loads(sys.argv[2])
for i in range(int(sys.argv[3])):
    store.submit({**request, "seed": i}, name=f"{sys.argv[4]}-{i}", batch="load")
"""


def test_load_200_jobs_from_two_submitters_through_two_workers(jm, home, tmp_path):
    """Two processes submit 100 real renders each while a pool of two worker processes
    claims them: all 200 succeed, each exactly once; 200 videos and 200 sidecars."""
    store = JobStore.at_home(home)
    request, _ = prepare_request(RenderRequest(face=str(jm["face"]), audio=str(jm["short"]), output=None), home)
    t0 = time.monotonic()
    pool = start_worker(home, "--quiet", "--concurrency", "2", log=tmp_path / "pool.log")
    try:
        subs = [subprocess.Popen([sys.executable, "-c", SUBMITTER, str(home), json.dumps(request), "100", f"s{k}"])
                for k in range(2)]
        assert all(p.wait(timeout=60) == 0 for p in subs)
        wait_for(lambda: store.counts(batch="load")["succeeded"] + store.counts(batch="load")["failed"] >= 200, 240,
                 "200 jobs", interval=0.5)
        elapsed = time.monotonic() - t0
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=20) == 0
    finally:
        if pool.poll() is None:
            pool.kill()
    print(f"200 renders through 2 workers in {elapsed:.1f} s")
    jobs = store.list(batch="load")
    assert len(jobs) == 200 and len({j.name for j in jobs}) == 200
    assert all(j.state == JobState.SUCCEEDED and j.attempts == 1 for j in jobs), [j.error for j in jobs if j.error][:3]
    assert len({j.worker for j in jobs}) == 2  # both workers took jobs
    videos = sorted((home / "outputs").rglob("*.mp4"))
    sidecars = sorted((home / "outputs").rglob("*.json"))
    assert len(videos) == 200 and len(sidecars) == 200
    assert videos == sorted(default_output(home, j) for j in jobs)
    assert not hidden_files(home / "outputs")
    for j in jobs:
        assert executions(home, j.id) == 1
        assert sum("started by" in e["message"] for e in store.events(j.id)) == 1
