"""Jobs on a real Ray cluster: a local head started on loopback for this module (its own
temporary folder, no dashboard, usage stats off), `facetalk batch --ray` and `facetalk
worker --ray` through it (photos, an identity, text-to-speech, a neural base model, all
shipped to the node), GPU rows on a CPU-only cluster, a task killed mid-render (retried
like a dead worker), a job cancelled mid-render, and last a second node declaring a GPU,
where a GPU row then lands.

The cluster is stopped by killing the process group it was started in (never `ray
stop`, which stops every Ray cluster of the machine, other people's included).
Deselect with -m "not ray".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from facetalk.cli import main
from facetalk.jobs.runner import prepare_request
from facetalk.jobs.store import JobState, JobStore
from facetalk.media.encode import VideoWriter
from facetalk.media.video import iter_frames, probe_video
from facetalk.pipeline import RenderRequest

from .conftest import decode_video, espeak, read_wav, write_wav

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(monkeypatch_module) -> dict:
    """A one-node Ray cluster (2 CPUs, no GPU) on 127.0.0.1; its address and temp folder."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed: pip install -e '.[cluster]'")
        pytest.skip("ray is not installed (pip install -e '.[cluster]')")
    tmp = Path(tempfile.mkdtemp(prefix="ftray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    (tmp / "home").mkdir()
    env = {**os.environ, "HOME": str(tmp / "home"), "RAY_USAGE_STATS_ENABLED": "0"}
    for key, value in (("HOME", str(tmp / "home")), ("RAY_USAGE_STATS_ENABLED", "0")):
        monkeypatch_module.setenv(key, value)  # the driver (this process) too
    port = _free_port()
    ray_exe = Path(sys.executable).parent / "ray"
    log = open(tmp / "ray-start.log", "w")  # noqa: SIM115 - closed in the finaliser
    proc = subprocess.Popen([str(ray_exe), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                             f"--temp-dir={tmp / 'r'}", "--include-dashboard=false", "--num-cpus=2", "--num-gpus=0",
                             "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: stopped by killing that group
    try:
        rc = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        rc = "timed out"
    if rc != 0:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"ray start failed ({rc}): {(tmp / 'ray-start.log').read_text()[-2000:]}")
    info = {"address": f"127.0.0.1:{port}", "tmp": tmp, "temp_dir": tmp / "r", "env": env, "groups": [proc.pid],
            "ray": ray_exe}
    try:
        yield info
    finally:
        for group in info["groups"]:
            try:
                os.killpg(group, signal.SIGKILL)  # gcs_server, raylet and the worker processes: all in the group
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory, monkeypatch_module) -> Path:
    h = tmp_path_factory.mktemp("ray-home")
    monkeypatch_module.setenv("FACETALK_HOME", str(h))
    return h


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, media, home) -> dict:
    """A 128 px photo, about a second of speech, 8 s of speech, and an identity learnt
    (`facetalk identity create`) from 4 s of a talking clip."""
    d = tmp_path_factory.mktemp("ray-in")
    face = d / "face.png"
    Image.fromarray(skimage.data.astronaut()[20:276, 110:366]).resize((128, 128), Image.LANCZOS).save(face)
    hello = espeak("Hello there", d / "hello.wav", speed=170)
    bye = espeak("Bye now", d / "bye.wav", speed=170)
    samples, sr = read_wav(hello)
    phrase = np.concatenate([samples, np.zeros(sr // 3, np.float32)])
    long = write_wav(d / "long.wav", np.concatenate([phrase] * int(np.ceil(8 * sr / len(phrase)))), sr)
    src = media / "talking" / "congressman-60s-256px.mp4"
    fps = probe_video(src).fps
    footage = d / "congressman.mp4"
    with VideoWriter(footage, 256, 256, fps, audio_path=src, crf=14) as w:
        for rgb in islice(iter_frames(src), int(4 * fps)):
            w.write(np.ascontiguousarray(rgb[:256, :256]))
    assert main(["identity", "create", "congressman", "--footage", str(footage), "--consent", "test", "--quiet"]) == 0
    return {"dir": d, "face": face, "hello": hello, "bye": bye, "long": long}


def test_batch_runs_on_the_cluster(capsys, cluster, home, inputs, tmp_path):
    m = inputs["dir"] / "m.jsonl"
    m.write_text('{"name": "photo", "face": "face.png", "audio": "hello.wav"}\n'
                 '{"name": "person", "identity": "congressman", "audio": "hello.wav", "size": 128}\n'
                 '{"name": "again", "face": "face.png", "audio": "bye.wav", "still": true, "cpus": 1}\n'
                 '{"name": "missing", "face": "face.png", "audio": "nowhere.wav"}\n'
                 '{"name": "spoken", "face": "face.png", "text": "Good morning.", "size": 96}\n')
    out = tmp_path / "out"
    code = main(["batch", str(m), "--ray", cluster["address"], "--out", str(out), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 2 and s["executor"] == f"Ray cluster {cluster['address']}", s
    rows = {r["name"]: r for r in s["rows"]}
    assert [rows[n]["state"] for n in ("photo", "person", "again", "missing", "spoken")] == \
        ["succeeded"] * 3 + ["failed", "succeeded"]
    assert "nowhere.wav does not exist" in rows["missing"]["error"]
    store = JobStore.at_home(home)
    for name, audio in (("photo", inputs["hello"]), ("person", inputs["hello"]), ("again", inputs["bye"])):
        video = out / f"{name}.mp4"
        assert rows[name]["output"] == str(video)
        frames, fps = decode_video(video)
        samples, sr = read_wav(audio)
        assert len(frames) == pytest.approx(samples.size / sr * fps, abs=2) and max(frames[0].shape[:2]) == 128
        side = json.loads((out / f"{name}.json").read_text())
        assert side["job"] == rows[name]["job"] and side["request"]["output"] == str(video)
        assert side["request"]["audio"] == str(audio)  # the driver's paths, not the node's copies
        job = store.get(rows[name]["job"])
        assert job.state == JobState.SUCCEEDED and job.outputs == [str(video), str(out / f"{name}.json")]
        assert job.worker is None or job.worker.startswith("ray-")
        log = (home / "logs" / "jobs" / f"{job.id}.log").read_text()
        assert "running on Ray node" in log and "stage render" in log, log
    assert json.loads((out / "person.json").read_text())["result"]["identity"] == "congressman@v1"
    spoken = json.loads((out / "spoken.json").read_text())  # text-to-speech ran on the node
    assert spoken["request"]["text"] == "Good morning." and 0.5 < spoken["result"]["duration"] < 3.0
    assert max(decode_video(out / "spoken.mp4")[0][0].shape[:2]) == 96
    assert "num_cpus=1" in (home / "logs" / "jobs" / f"{rows['again']['job']}.log").read_text()
    # the node worked from copies shipped through the object store: the inputs by content,
    # the identity's version folder rebuilt (and verified) under a node-local home
    node = next(cluster["temp_dir"].glob("session_2*/facetalk"))
    shipped = {p.name for p in (node / "files").glob("*/*")}
    assert shipped == {"face.png", "hello.wav", "bye.wav"}
    assert (node / "home" / "identities" / "congressman" / "v1" / "mouth_bank.safetensors").is_file()
    assert not list(node.glob("render-*"))  # each task's temporary folder is gone


def test_gpu_row_does_not_run_on_a_cpu_cluster(capsys, cluster, home, inputs, tmp_path):
    m = inputs["dir"] / "gpu.jsonl"
    m.write_text('{"name": "asks", "face": "face.png", "audio": "hello.wav", "gpus": 1}\n'
                 '{"name": "cuda", "face": "face.png", "audio": "hello.wav", "renderer": "neural", "device": "cuda"}\n'
                 '{"name": "plain", "face": "face.png", "audio": "hello.wav"}\n')
    code = main(["batch", str(m), "--ray", cluster["address"], "--out", str(tmp_path), "--json"])
    s = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in s["rows"]}
    assert code == 2 and rows["plain"]["state"] == "succeeded", s
    store = JobStore.at_home(home)
    for name in ("asks", "cuda"):  # one asks for a GPU, the other runs its model on CUDA: a GPU by default
        assert rows[name]["state"] == "not_run" and "needs 1 GPU and no node of the Ray cluster" in rows[name]["error"]
        job = store.get(rows[name]["job"])
        assert job.state == JobState.QUEUED and job.attempts == 0 and job.resources["gpus"] == 1
        assert not (tmp_path / f"{name}.mp4").exists()
        store.cancel(job.id)


def test_worker_ray_runs_queued_jobs(capsys, cluster, home, inputs, tmp_path):
    out = tmp_path / "w.mp4"
    assert main(["jobs", "submit", "--face", str(inputs["face"]), "--audio", str(inputs["bye"]), "-o", str(out),
                 "--quiet", "--batch", "w"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["worker", "--ray", cluster["address"], "--once", "--batch", "w"]) == 0
    err = capsys.readouterr().err
    assert f"job {job_id} succeeded" in err and "connected to the Ray cluster" in err
    job = JobStore.at_home(home).get(job_id)
    assert job.state == JobState.SUCCEEDED and out.is_file() and out.with_suffix(".json").is_file()


def test_lost_task_is_retried_and_cancel_stops_a_task(cluster, home, inputs):
    from facetalk.jobs.ray_executor import RayWorker

    store = JobStore.at_home(home)

    def submit() -> str:
        d, versions = prepare_request(RenderRequest(face=str(inputs["face"]), audio=str(inputs["long"]), output=None),
                                      home)
        return store.submit(d, versions=versions, batch="lost").id

    lost, cancelled = submit(), submit()
    worker = RayWorker(home, cluster["address"], concurrency=1, once=True, batch="lost", lease_s=10)
    thread = threading.Thread(target=worker.run)
    thread.start()

    def rendering(job_id: str) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            task = worker.executor.tasks.get(job_id) if worker.executor else None
            if task and store.get(job_id).stage == "render":
                return task["pid"]
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached the render stage")

    try:
        os.kill(rendering(lost), signal.SIGKILL)  # the Ray worker process dies mid-render
        pid = rendering(cancelled)
        store.cancel(cancelled)
        thread.join(90)
        assert not thread.is_alive()
    finally:
        worker.stop()
        thread.join(30)
    job = store.get(lost)
    events = [e["message"] for e in store.events(lost)]
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, events
    assert any("attempt 1/3 failed, will retry: the Ray task was lost (WorkerCrashedError" in e for e in events), events
    assert Path(job.outputs[0]).is_file()
    job = store.get(cancelled)
    assert job.state == JobState.CANCELLED and job.outputs == []
    outputs = list((home / "outputs").rglob(f"*{cancelled}*"))
    assert outputs == []  # nothing left behind, not even a hidden temporary file
    node = next(cluster["temp_dir"].glob("session_2*/facetalk"))
    deadline = time.monotonic() + 10
    while list(node.glob(f"render-{pid}-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(node.glob(f"render-{pid}-*"))  # the cancelled task cleaned up after itself


def test_unreachable_cluster_fails_before_submitting(capsys, home, inputs):
    pytest.importorskip("ray")
    m = inputs["dir"] / "nowhere.jsonl"
    m.write_text('{"name": "n", "face": "face.png", "audio": "hello.wav"}\n')
    before = len(JobStore.at_home(home).list())
    t0 = time.monotonic()
    code = main(["batch", str(m), "--ray", f"127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot connect to the Ray cluster at 127.0.0.1:" in err and "ray start --head" in err, err
    assert time.monotonic() - t0 < 10  # not ray.init's minutes of retries
    assert len(JobStore.at_home(home).list()) == before  # nothing queued


def test_neural_row_ships_its_base_model(capsys, cluster, home, inputs, tmp_path):
    pytest.importorskip("torch")
    from .neural_fixtures import tiny_base

    base = tiny_base(inputs["dir"] / "tinybase")
    m = inputs["dir"] / "neural.jsonl"
    m.write_text('{"name": "neural", "face": "face.png", "audio": "hello.wav", "renderer": "neural", '
                 '"base": "tinybase"}\n')
    code = main(["batch", str(m), "--ray", cluster["address"], "--out", str(tmp_path), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 0, s
    side = json.loads((tmp_path / "neural.json").read_text())
    assert side["result"]["renderer"] == "neural" and side["request"]["base"] == str(base)  # the driver's path
    node = next(cluster["temp_dir"].glob("session_2*/facetalk"))
    shipped = list((node / "home" / "models").glob("tinybase-*/model.safetensors"))
    assert len(shipped) == 1 and shipped[0].read_bytes() == (base / "model.safetensors").read_bytes()


def test_gpu_row_lands_on_the_gpu_node(capsys, cluster, home, inputs, tmp_path):
    """A second node joins declaring one GPU (Ray schedules by declared resources): the
    row asking for a GPU runs there, the other rows on any node."""
    import ray

    proc = subprocess.Popen([str(cluster["ray"]), "start", f"--address={cluster['address']}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=1", "--disable-usage-stats"],
                            env=cluster["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cluster["groups"].append(proc.pid)
    assert proc.wait(timeout=90) == 0
    ray.init(address=cluster["address"], log_to_driver=False)
    try:
        deadline = time.monotonic() + 30
        while not (gpu_nodes := [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")]):
            assert time.monotonic() < deadline, "the GPU node did not join"
            time.sleep(0.2)
        m = inputs["dir"] / "gpu-node.jsonl"
        m.write_text('{"name": "needs", "face": "face.png", "audio": "hello.wav", "gpus": 1, "cpus": 1}\n'
                     '{"name": "any", "face": "face.png", "audio": "bye.wav"}\n')
        code = main(["batch", str(m), "--ray", cluster["address"], "--out", str(tmp_path), "--json"])
        s = json.loads(capsys.readouterr().out)
    finally:
        ray.shutdown()
    assert code == 0, s
    job = {r["name"]: r["job"] for r in s["rows"]}
    log = (home / "logs" / "jobs" / f"{job['needs']}.log").read_text()
    assert f"running on Ray node {gpu_nodes[0]}" in log and "num_gpus=1" in log
    assert (tmp_path / "needs.mp4").is_file() and (tmp_path / "any.mp4").is_file()
