"""The job store: states, leases, retries and atomic claims, from one process and many."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import time

import pytest

from facetalk import __version__
from facetalk.errors import FacetalkError
from facetalk.jobs.logs import job_log_path
from facetalk.jobs.store import (
    SCHEMA_VERSION,
    JobError,
    JobState,
    JobStore,
    job_name,
    new_job_id,
    parse_duration,
    safe_name,
)

REQUEST = {"face": "/data/face.png", "audio": "/data/hi.wav", "output": None, "seed": 0, "size": [128, 128]}


@pytest.fixture
def store(tmp_path) -> JobStore:
    s = JobStore.at_home(tmp_path)
    yield s
    s.close()


def test_creates_a_versioned_wal_database(tmp_path):
    store = JobStore.at_home(tmp_path / "home")
    assert store.path == (tmp_path / "home" / "jobs.db").absolute() and store.path.is_file()
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    JobStore.at_home(tmp_path / "home")  # opening it again changes nothing
    assert pickle.loads(pickle.dumps(store)).path == store.path  # goes to other processes by its path


def test_refuses_a_newer_schema_and_a_broken_file(tmp_path):
    store = JobStore.at_home(tmp_path)
    store.close()
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JobError, match="schema 99.*upgrade facetalk"):
        JobStore.at_home(tmp_path)
    bad = tmp_path / "other"
    bad.mkdir()
    (bad / "jobs.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JobError, match="cannot use the job store"):
        JobStore.at_home(bad)


def test_submit_records_the_request_versions_and_a_name(store):
    job = store.submit(REQUEST, batch="b1", resources={"gpus": 0})
    assert job.state == JobState.QUEUED and job.attempts == 0 and job.max_attempts == 3
    assert job.request == REQUEST and job.batch == "b1" and job.name == "face"
    assert job.versions["facetalk"] == __version__ and "pocketsphinx" in job.versions and "face-recognition-models" in job.versions
    assert job.resources == {"cpus": 2, "gpus": 0}
    assert abs(job.created - time.time()) < 5 and job.started is None and job.outputs == [] and job.metrics == {}
    assert store.get(job.id) == job
    assert [e["message"] for e in store.events(job.id)] == ["submitted in batch b1"]
    assert "submitted" in job_log_path(store.home, job.id).read_text()


def test_ids_are_sortable_and_unique():
    ids = [new_job_id(1_800_000_000.0 + i) for i in range(3)]
    assert ids == sorted(ids) and all(len(i) == 22 for i in ids)
    assert len({new_job_id(1_800_000_000.0) for _ in range(2000)}) > 1990  # 24 random bits


def test_names_are_safe_for_file_names():
    assert job_name({"output": "/x/My Talk (final).mp4"}) == "My-Talk-final"
    assert job_name({"output": None, "identity": "anna@v2", "face": "/x/p.png"}) == "anna"
    assert job_name({"face": "/x/../p ic.jpg"}) == "p-ic"
    assert job_name({}) == "render"
    assert safe_name("../../etc/passwd") == "etc-passwd" and safe_name("....") == "render"
    assert len(safe_name("x" * 200)) == 40


def test_get_by_prefix_or_suffix_and_clear_errors(store):
    a = store.submit(REQUEST)
    b = store.submit(REQUEST)
    k = next(i for i in range(len(a.id)) if a.id[i] != b.id[i]) + 1  # the shortest unique prefix
    assert store.get(a.id[:k]).id == a.id and store.get(b.id[:k].upper()).id == b.id
    assert store.get(a.id.rsplit("-", 1)[1]).id == a.id
    with pytest.raises(JobError, match="ambiguous"):
        store.get(a.id[:8])  # the same day
    with pytest.raises(JobError, match="no job 'zzz'") as e:
        store.get("zzz")
    assert isinstance(e.value, FacetalkError) and "\n" not in str(e.value)
    with pytest.raises(JobError, match="no job"):
        store.get("20990101-000000-000000")


def test_list_filters_and_limits(store):
    jobs = [store.submit(REQUEST, batch="x" if i % 2 else None) for i in range(5)]
    assert [j.id for j in store.list()] == [j.id for j in jobs]
    assert [j.id for j in store.list(limit=2)] == [j.id for j in jobs[-2:]]
    assert [j.id for j in store.list(batch="x")] == [jobs[1].id, jobs[3].id]
    store.cancel(jobs[0].id)
    assert [j.id for j in store.list(state=JobState.CANCELLED)] == [jobs[0].id]
    assert [j.id for j in store.list(state="queued")] == [j.id for j in jobs[1:]]
    assert store.counts() == {"queued": 4, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 1}


def test_claim_takes_the_oldest_then_nothing(store):
    a, b = store.submit(REQUEST), store.submit(REQUEST)
    got = store.claim("w1", lease_s=30)
    assert got.id == a.id and got.state == JobState.RUNNING and got.worker == "w1" and got.attempts == 1
    assert got.started is not None and got.lease_until > time.time() + 25
    assert store.claim("w2").id == b.id
    assert store.claim("w3") is None


def test_claim_a_given_job_and_gpu_jobs_only_on_gpu_workers(store):
    a = store.submit(REQUEST)
    gpu = store.submit(REQUEST, resources={"gpus": 1})
    c = store.submit(REQUEST)
    assert store.claim("w", job_id=c.id).id == c.id
    assert store.claim("w", job_id=c.id) is None  # not queued any more
    assert store.claim("cpu-only").id == a.id
    assert store.claim("cpu-only") is None  # the GPU job stays for a GPU worker
    assert store.claim("gpu-worker", gpus=1).id == gpu.id


def test_submit_already_claimed_is_never_taken_by_another(store):
    job = store.submit(REQUEST, max_attempts=1, worker="me", lease_s=30)
    assert job.state == JobState.RUNNING and job.worker == "me" and job.attempts == 1
    assert store.claim("other") is None
    assert store.succeed(job.id, "me", ["/o.mp4"], {"n_frames": 3})


def test_an_expired_lease_is_requeued_then_fails_when_attempts_are_used(store):
    job = store.submit(REQUEST, max_attempts=2)
    store.claim("dead", lease_s=0.05)
    time.sleep(0.1)
    again = store.claim("w2", lease_s=0.05)  # requeues the dead worker's job, then takes it
    assert again.id == job.id and again.attempts == 2 and again.worker == "w2"
    assert not store.renew(job.id, "dead")  # the dead worker has lost it for good
    assert not store.succeed(job.id, "dead", ["/x.mp4"], {})
    assert store.fail(job.id, "dead", "late", retry=True) is None
    time.sleep(0.1)
    assert store.requeue_expired() == [job.id]
    failed = store.get(job.id)
    assert failed.state == JobState.FAILED and failed.attempts == 2 and "stopped responding" in failed.error
    messages = [e["message"] for e in store.events(job.id)]
    assert sum(m.startswith("requeued") for m in messages) == 1 and messages[-1].startswith("failed")


def test_renew_keeps_a_job(store):
    job = store.submit(REQUEST)
    store.claim("w", lease_s=0.3)
    for _ in range(4):
        time.sleep(0.1)
        assert store.renew(job.id, "w", lease_s=0.3)
    assert store.claim("other") is None and store.get(job.id).worker == "w"
    store.report(job.id, "w", "render", 0.5)
    store.report(job.id, "someone-else", "render", 0.9)  # ignored
    j = store.get(job.id)
    assert (j.stage, j.progress) == ("render", 0.5)


def test_failures_are_retried_until_the_attempts_are_used(store):
    job = store.submit(REQUEST, max_attempts=3)
    for attempt in (1, 2):
        store.claim("w")
        assert store.fail(job.id, "w", f"disk full\nsecond line {attempt}", retry=True) == JobState.QUEUED
        j = store.get(job.id)
        assert j.state == JobState.QUEUED and j.attempts == attempt and j.error == f"disk full second line {attempt}"
    store.claim("w")
    assert store.fail(job.id, "w", "disk full", retry=True) == JobState.FAILED
    j = store.get(job.id)
    assert j.state == JobState.FAILED and j.attempts == 3 and j.error == "disk full" and j.finished is not None
    assert sum("failed" in e["message"] for e in store.events(job.id)) == 3


def test_a_failure_not_worth_retrying_fails_at_once(store):
    job = store.submit(REQUEST)
    store.claim("w")
    assert store.fail(job.id, "w", "no face found in face.png", retry=False) == JobState.FAILED
    assert store.get(job.id).attempts == 1
    assert store.fail(job.id, "w", "again", retry=False) is None  # not running any more


def test_release_gives_a_job_back_without_counting(store):
    job = store.submit(REQUEST)
    store.claim("w")
    assert store.release(job.id, "w")
    j = store.get(job.id)
    assert j.state == JobState.QUEUED and j.attempts == 0 and j.worker is None
    assert not store.release(job.id, "w")
    assert store.claim("w2").attempts == 1


def test_cancel_and_retry(store):
    queued, running, done = store.submit(REQUEST), store.submit(REQUEST), store.submit(REQUEST)
    store.claim("w", job_id=running.id)
    store.claim("w", job_id=done.id)
    store.succeed(done.id, "w", ["/a.mp4"], {})
    assert store.cancel(queued.id).state == JobState.CANCELLED
    assert store.claim("w") is None
    assert store.cancel(running.id[-6:]).state == JobState.CANCELLED
    assert not store.renew(running.id, "w")  # the worker sees it and stops
    assert not store.succeed(running.id, "w", ["/b.mp4"], {})
    assert store.get(running.id).state == JobState.CANCELLED
    assert store.cancel(running.id).state == JobState.CANCELLED  # again: no change
    with pytest.raises(JobError, match="already succeeded"):
        store.cancel(done.id)
    with pytest.raises(JobError, match="only failed or cancelled"):
        store.retry(done.id)
    again = store.retry(queued.id)
    assert again.state == JobState.QUEUED and again.attempts == 0 and again.error is None and again.finished is None
    assert store.claim("w").id == queued.id


def test_clean_removes_old_finished_jobs_and_their_logs(store):
    old, recent, queued = store.submit(REQUEST), store.submit(REQUEST), store.submit(REQUEST)
    for j in (old, recent):
        store.claim("w", job_id=j.id)
        store.succeed(j.id, "w", [], {})
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE jobs SET finished = ? WHERE id = ?", (time.time() - 31 * 86400, old.id))
        db.execute("UPDATE jobs SET created = ? WHERE id = ?", (time.time() - 40 * 86400, queued.id))
    db.close()
    assert job_log_path(store.home, old.id).is_file()
    assert store.clean(parse_duration("30d")) == 1
    assert {j.id for j in store.list()} == {recent.id, queued.id}  # a queued job is never cleaned
    assert not job_log_path(store.home, old.id).exists() and store.events(recent.id)
    with pytest.raises(JobError):
        store.events(old.id)


def test_delete(store):
    job = store.submit(REQUEST)
    store.claim("w")
    with pytest.raises(JobError, match="cancel it first"):
        store.delete(job.id)
    store.cancel(job.id)
    store.delete(job.id)
    assert store.list() == [] and not job_log_path(store.home, job.id).exists()


def test_parse_duration():
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200 and parse_duration("90m") == 5400 and parse_duration("45s") == 45
    assert parse_duration("2w") == 14 * 86400 and parse_duration("10") == 10 and parse_duration("0.5h") == 1800
    for bad in ("", "d", "5y", "-1d", "1 day"):
        with pytest.raises(JobError, match="duration"):
            parse_duration(bad)


SUBMITTER = """
import sys
from facetalk.jobs.store import JobStore
store = JobStore.at_home(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.submit({"face": "/f.png", "audio": "/a.wav", "output": None, "by": sys.argv[3], "i": i})
"""

# Each claimer stops once every job has succeeded (not after some idle seconds: on a busy
# machine the submitters may start later than that); the deadline only ends a broken run.
CLAIMER = """
import sys, time
from facetalk.jobs.store import JobStore
store = JobStore.at_home(sys.argv[1])
me, total = sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 100
with open(sys.argv[4], "w") as log:
    while time.monotonic() < deadline:
        job = store.claim(me, lease_s=60)
        if job is None:
            if store.counts()["succeeded"] >= total:
                break
            time.sleep(0.005)
            continue
        log.write(job.id + "\\n")
        log.flush()
        store.report(job.id, me, "render", 0.5)
        assert store.succeed(job.id, me, [f"/out/{job.id}.mp4"], {"by": me})
"""


def test_many_processes_submitting_and_claiming_never_run_a_job_twice(tmp_path):
    """Two processes submit 150 jobs each while four processes claim them: every job is
    claimed exactly once, none is lost."""
    JobStore.at_home(tmp_path).close()
    per, claimers = 150, 4
    env_python = [sys.executable, "-c"]
    subs = [subprocess.Popen(env_python + [SUBMITTER, str(tmp_path), str(per), f"s{k}"]) for k in range(2)]
    logs = [tmp_path / f"claimed-{k}.txt" for k in range(claimers)]
    workers = [subprocess.Popen(env_python + [CLAIMER, str(tmp_path), f"c{k}", str(2 * per), str(logs[k])])
               for k in range(claimers)]
    for p in subs + workers:
        assert p.wait(timeout=120) == 0
    claimed = [line for f in logs for line in f.read_text().split()]
    store = JobStore.at_home(tmp_path)
    jobs = store.list()
    assert len(jobs) == 2 * per
    assert sorted(claimed) == sorted(j.id for j in jobs)  # each exactly once
    assert all(j.state == JobState.SUCCEEDED and j.attempts == 1 for j in jobs)
    assert sum(1 for f in logs if f.read_text()) >= 2  # the claims really were concurrent
    by = {(j.request["by"], j.request["i"]) for j in jobs}
    assert len(by) == 2 * per
    for j in jobs:
        assert sum("started by" in e["message"] for e in store.events(j.id)) == 1
    assert json.loads(json.dumps(jobs[0].to_dict()))["state"] == "succeeded"
