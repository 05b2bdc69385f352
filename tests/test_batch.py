"""`facetalk batch`: manifests (JSONL, JSON, CSV) with relative paths, one audio for many
identities with shared loading, bad rows failing alone, the summary, --resume,
--submit-only with `worker --batch`, and worker processes (--concurrency).

Renders are tiny (a 128 px photo or identity clip, about a second of espeak speech) and
the two identities are learnt with the real `facetalk identity create` from 4 s cuts of
two different talking clips.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from facetalk.cli import main
from facetalk.errors import InputError
from facetalk.eval.bench import cut_clip
from facetalk.jobs.batch import read_manifest, row_request, valid_keys
from facetalk.jobs.store import JobState, JobStore

from .cli_helpers import assert_one_line_error
from .conftest import decode_video, espeak, read_wav


@pytest.fixture(scope="module")
def home(tmp_path_factory, monkeypatch_module) -> Path:
    h = tmp_path_factory.mktemp("batch-home")
    monkeypatch_module.setenv("FACETALK_HOME", str(h))
    return h



@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """in/face.png (128 px), in/hello.wav and in/bye.wav (about a second each)."""
    d = tmp_path_factory.mktemp("batch") / "in"
    d.mkdir()
    face = d / "face.png"
    Image.fromarray(skimage.data.astronaut()[20:276, 110:366]).resize((128, 128), Image.LANCZOS).save(face)
    hello = espeak("Hello there", d / "hello.wav", speed=170)
    bye = espeak("Bye now", d / "bye.wav", speed=170)
    return {"dir": d, "root": d.parent, "face": face, "hello": hello, "bye": bye}


@pytest.fixture(scope="module")
def identities(media, home, tmp_path_factory) -> list[str]:
    """Two people, learnt through `facetalk identity create` from 4 s of two clips."""
    d = tmp_path_factory.mktemp("footage")
    for name, clip in (("congressman", "congressman-60s-256px.mp4"), ("anchor", "news-anchor-de-20s.mp4")):
        footage = cut_clip(media / "talking" / clip, d / f"{name}.mp4", 4.0, crf=14)
        assert main(["identity", "create", name, "--footage", str(footage), "--consent", "test footage", "--quiet"]) == 0
    return ["congressman", "anchor"]


def batch(capsys, *args) -> tuple[int, dict | str, str]:
    """Run `facetalk batch ARGS`; (exit code, the JSON summary when --json else stdout, stderr)."""
    code = main(["batch", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args and out.strip() else out), err


def rows_by_name(summary: dict) -> dict[str, dict]:
    return {r["name"]: r for r in summary["rows"]}


def frames_of(path: str | Path) -> tuple[int, float, tuple[int, int]]:
    frames, fps = decode_video(Path(path))
    return len(frames), fps, frames[0].shape[:2]


# -- manifests -----------------------------------------------------------------------------

def test_manifests_in_three_formats_with_paths_relative_to_the_manifest(capsys, home, inputs, tmp_path, monkeypatch):
    mdir = inputs["root"] / "manifests"
    mdir.mkdir(exist_ok=True)
    # the same two renders in each format; paths relative to manifests/
    (mdir / "m.jsonl").write_text(
        "# two renders\n"
        '{"name": "hi", "face": "../in/face.png", "audio": "../in/hello.wav", "fps": 12, "seed": 3}\n'
        "\n"
        '{"name": "bye", "face": "../in/face.png", "audio": "../in/bye.wav", "size": "96x64", "still": true}\n')
    (mdir / "m.json").write_text(json.dumps({"rows": [
        {"name": "hi", "face": "../in/face.png", "audio": "../in/hello.wav", "fps": 12, "seed": 3},
        {"name": "bye", "face": "../in/face.png", "audio": "../in/bye.wav", "size": "96x64", "still": True}]}))
    (mdir / "m.csv").write_text(
        "name,face,audio,fps,seed,size,still\n"
        "hi,../in/face.png,../in/hello.wav,12,3,,\n"
        "bye,../in/face.png,../in/bye.wav,,,96x64,yes\n")
    monkeypatch.chdir(tmp_path)  # somewhere else: paths must not be taken from the current folder
    for ext in ("jsonl", "json", "csv"):
        out = tmp_path / f"out-{ext}"
        code, s, err = batch(capsys, mdir / f"m.{ext}", "--out", out, "--json")
        assert code == 0, (ext, s, err)
        assert s["counts"]["succeeded"] == 2 and s["ok"] and s["total"] == 2, s
        assert sorted(s["outputs"]) == sorted([str(out / "hi.mp4"), str(out / "bye.mp4")])
        n, fps, _ = frames_of(out / "hi.mp4")
        assert fps == pytest.approx(12.0) and n == pytest.approx(12 * read_wav(inputs["hello"])[0].size / read_wav(inputs["hello"])[1], abs=2)
        _, fps, shape = frames_of(out / "bye.mp4")
        assert fps == pytest.approx(25.0) and shape == (64, 96)
        hi = json.loads((out / "hi.json").read_text())
        assert hi["request"]["face"] == str(inputs["face"]) and hi["request"]["audio"] == str(inputs["hello"])
        assert hi["request"]["seed"] == 3 and hi["request"]["fps"] == 12.0 and hi["batch"] == s["batch"]
        bye = json.loads((out / "bye.json").read_text())
        assert bye["request"]["still"] is True and bye["request"]["size"] == [96, 64]
    # three manifests, three batches, each a set of jobs in the store
    store = JobStore.at_home(home)
    batches = {j.batch for j in store.list() if j.batch and j.batch.startswith("m-")}
    assert len(batches) == 3


def test_reading_manifests():
    """Rows as read: comments and blank lines skipped, unreadable lines kept as failing rows,
    CSV empty cells left out; values coerced for the render options they set."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "a.jsonl").write_text('# c\n\n{"audio": "x.wav"}\nnot json\n[1, 2]\n')
        rows = read_manifest(d / "a.jsonl")
        assert [(r.where, r.raw, r.error is None) for r in rows] == [
            ("line 3", {"audio": "x.wav"}, True), ("line 4", None, False), ("line 5", None, False)]
        assert "not valid JSON" in rows[1].error and "not a JSON object" in rows[2].error
        (d / "b.csv").write_text("audio,fps,crf\nx.wav,,20\n,,\n")
        rows = read_manifest(d / "b.csv")
        assert [r.raw for r in rows] == [{"audio": "x.wav", "crf": "20"}]
        (d / "c.txt").write_text("{}")
        with pytest.raises(InputError, match=r"unknown kind '\.txt'"):
            read_manifest(d / "c.txt")
        (d / "d.json").write_text('{"renders": []}')
        with pytest.raises(InputError, match="list of objects"):
            read_manifest(d / "d.json")


def test_row_values_are_coerced_and_checked(inputs, home):
    base = inputs["dir"]
    raw = {"face": "face.png", "audio": "hello.wav", "fps": "12.5", "crf": "20", "still": "yes", "size": "1280x720",
           "seed": "7", "face-index": "0", "color_match": "histogram", "transcript_text": "hello there", "cpus": "4"}
    request, _, resources = row_request(raw, base, home, {}, None, "x")
    assert request["fps"] == 12.5 and request["crf"] == 20 and request["still"] is True and request["seed"] == 7
    assert request["size"] == (1280, 720) and request["face_index"] == 0 and request["color_match"] == "histogram"
    assert request["transcript"] == "hello there" and request["face"] == str(inputs["face"])
    assert resources == {"cpus": 4, "gpus": 0}
    assert row_request({**raw, "size": 720}, base, home, {}, None, "x")[0]["size"] == 720
    for bad, message in [({"fps": "fast"}, "fps 'fast' is not a number"), ({"crf": "2.5"}, "not a whole number"),
                         ({"still": "maybe"}, "not true or false"), ({"color_match": "vivid"}, "not one of none, mean"),
                         ({"size": "big"}, "WIDTHxHEIGHT"), ({"gpus": -1}, "gpus -1 is below 0"),
                         ({"colour": "red"}, "unknown key 'colour'; valid keys: " + ", ".join(valid_keys()))]:
        with pytest.raises(InputError, match=_escape(message)):
            row_request({**raw, **bad}, base, home, {}, None, "x")


def _escape(text: str) -> str:
    import re

    return re.escape(text)


# -- one audio, many identities ------------------------------------------------------------

def test_one_audio_for_many_identities_loads_and_analyses_once(capsys, home, inputs, identities, tmp_path):
    out = tmp_path / "videos"
    code, s, err = batch(capsys, "--audio", inputs["hello"], "--identities", ",".join(identities), "--out", out,
                         "--size", "128", "--json")
    assert code == 0, (s, err)
    assert s["counts"]["succeeded"] == 2 and s["executor"] == "this machine"
    # counted by the batch's JobCache: the audio analysed once before the rows, which both reuse it
    assert {k: s["shared"][k] for k in ("speech_analyses", "speech_reused", "identities_loaded", "identities_reused")} \
        == {"speech_analyses": 1, "speech_reused": 2, "identities_loaded": 2, "identities_reused": 0}
    rows = rows_by_name(s)
    assert set(rows) == set(identities)
    audio_s = read_wav(inputs["hello"])[0].size / read_wav(inputs["hello"])[1]
    for name in identities:
        video = out / f"{name}.mp4"
        assert rows[name]["output"] == str(video) and rows[name]["state"] == "succeeded"
        n, fps, shape = frames_of(video)
        assert n == pytest.approx(audio_s * fps, abs=2) and max(shape) == 128
        side = json.loads((out / f"{name}.json").read_text())
        assert side["result"]["identity"] == f"{name}@v1" and side["result"]["renderer"] == "retrieval"
        assert side["versions"]["identity"] == f"{name}@v1"
    # two different people: the videos differ
    a, _ = decode_video(out / f"{identities[0]}.mp4")
    b, _ = decode_video(out / f"{identities[1]}.mp4")
    assert np.abs(a[0].astype(int) - b[0].astype(int)).mean() > 20
    store = JobStore.at_home(home)
    jobs = store.list(batch=s["batch"])
    assert len(jobs) == 2 and all(j.state == JobState.SUCCEEDED for j in jobs)


def test_a_row_renders_the_same_alone_as_in_a_batch(capsys, home, inputs, identities, tmp_path):
    """A batch renders two rows at once (processes forked after its speech is analysed,
    sharing it): every video is still, frame for frame, the one `facetalk render` makes alone."""
    rows = {"first": (identities[0], "hello"), "second": (identities[1], "hello"), "again": (identities[0], "bye")}
    m = inputs["dir"] / "same.jsonl"
    m.write_text("".join(json.dumps({"name": name, "identity": ident, "audio": f"{audio}.wav", "size": 128}) + "\n"
                         for name, (ident, audio) in rows.items()))
    code, s, err = batch(capsys, m, "--out", tmp_path / "batch", "--json")
    assert code == 0 and s["counts"]["succeeded"] == 3, (s, err)
    assert s["shared"]["speech_analyses"] == 2 and s["shared"]["speech_reused"] == 3, s["shared"]
    for name, (ident, audio) in rows.items():
        alone = tmp_path / f"alone-{name}.mp4"
        assert main(["render", "--identity", ident, "--audio", str(inputs[audio]), "--size", "128", "-o", str(alone),
                     "--quiet"]) == 0
        a, fps_a = decode_video(alone)
        b, fps_b = decode_video(tmp_path / "batch" / f"{name}.mp4")
        assert fps_a == fps_b and len(a) == len(b) > 10, name
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), name
    capsys.readouterr()


# -- bad rows ------------------------------------------------------------------------------

def test_bad_rows_fail_alone_with_their_reason(capsys, home, inputs, identities, tmp_path):
    m = inputs["dir"] / "bad.jsonl"
    m.write_text("\n".join([
        '{"name": "good", "face": "face.png", "audio": "hello.wav"}',
        '{"name": "nofile", "face": "nobody.png", "audio": "hello.wav"}',
        '{"name": "stranger", "identity": "stranger", "audio": "hello.wav"}',
        '{"name": "words", "face": "face.png", "text": "Good morning."}',
        '{"name": "typo", "face": "face.png", "audio": "hello.wav", "colour": "red"}',
        '{"name": "good", "face": "face.png", "audio": "bye.wav"}',
        '{"face": "face.png", "audio": "hello.wav" oops}',
        f'{{"name": "person", "identity": "{identities[0]}", "audio": "bye.wav", "size": 128}}',
        '{"name": "both", "face": "face.png", "audio": "hello.wav", "text": "Hello there"}',
        '{"name": "mute", "face": "face.png", "text": "Hello", "voice": "xx-nope"}',
        '{"name": "silent", "face": "face.png"}',
    ]) + "\n")
    code, out, _ = batch(capsys, m, "--out", tmp_path / "o")
    assert code == 2
    lines = out.strip().splitlines()
    assert lines[0].startswith("batch bad-") and "11 rows" in lines[0] and "3 succeeded, 8 failed" in lines[0], out
    body = "\n".join(lines[1:])
    for name in ("good", "words", "person"):
        assert f"succeeded  {name:<8}  {tmp_path / 'o' / name}.mp4" in body, out
    expected = {
        "nofile": f"line 2: --face file {inputs['dir'] / 'nobody.png'} does not exist: check the path",
        "stranger": "line 3: unknown identity 'stranger'; known: anchor, congressman",
        "typo": "line 5: unknown key 'colour'; valid keys: audio,",
        "good-2": "line 6: name 'good' is taken by line 1: names must be unique in a batch",
        "row7": "line 7: not valid JSON",
        "both": "line 9: give --audio (a recording) or --text (words to speak), not both",
        "mute": "line 10: unknown voice 'xx-nope'",
        "silent": "line 11: no audio: give audio (a speech recording) or text (words to speak)",
    }
    for name, message in expected.items():
        line = next((x for x in lines if x.split()[1:2] == [name]), None)
        assert line is not None and line.split()[0] == "failed" and message in line, (name, out)
    assert "color_match" in next(x for x in lines if x.split()[1:2] == ["typo"])
    for name in ("good", "words", "person"):
        assert (tmp_path / "o" / f"{name}.mp4").is_file()
    assert not (tmp_path / "o" / "good-2.mp4").exists()
    # the text row was spoken by text-to-speech: its video lasts as long as its speech
    words = json.loads((tmp_path / "o" / "words.json").read_text())
    assert words["request"]["text"] == "Good morning." and words["request"]["audio"] is None
    assert 0.5 < words["result"]["duration"] < 3.0
    # every row is a job: the bad ones failed with their reason, never retried
    assert main(["jobs", "list", "--json", "--all"]) == 0
    jobs = [j for j in json.loads(capsys.readouterr().out) if j["batch"] and j["batch"].startswith("bad-")]
    assert len(jobs) == 11
    failed = {j["name"]: j for j in jobs if j["state"] == "failed"}
    assert set(failed) == set(expected) and all(j["attempts"] == 1 and j["max_attempts"] == 1 for j in failed.values())
    assert failed["stranger"]["error"].startswith("line 3: unknown identity 'stranger'")


def test_text_rows_and_resources(inputs, home):
    base = inputs["dir"]
    request, _, resources = row_request({"face": "face.png", "text": "Good morning", "rate": "150"}, base, home, {},
                                        None, "x")
    assert request["text"] == "Good morning" and request["audio"] is None and request["rate"] == 150
    assert resources == {"cpus": 2, "gpus": 0}
    # a model run on CUDA needs a GPU unless the row says otherwise
    cuda = {"face": "face.png", "audio": "hello.wav", "device": "cuda"}
    assert row_request(cuda, base, home, {}, None, "x")[2] == {"cpus": 2, "gpus": 1}
    assert row_request({**cuda, "gpus": 0}, base, home, {}, None, "x")[2] == {"cpus": 2, "gpus": 0}
    # the command line's options are every row's defaults; a row's own win
    request, _, _ = row_request({"face": "face.png", "audio": "hello.wav", "crf": 30}, base, home,
                                {"crf": 20, "seed": 5}, None, "x")
    assert request["crf"] == 30 and request["seed"] == 5


# -- resume --------------------------------------------------------------------------------

def test_resume_runs_only_what_is_not_done(capsys, home, inputs, tmp_path):
    d = tmp_path / "job"
    d.mkdir()
    for f in ("face", "hello", "bye"):
        shutil.copy(inputs[f], d / inputs[f].name)
    m = d / "lesson.csv"
    m.write_text("name,face,audio\nfirst,face.png,hello.wav\nsecond,face.png,bye.wav\nthird,face.png,later.wav\n")
    out = tmp_path / "out"
    code, s, _ = batch(capsys, m, "--out", out, "--json")
    assert code == 2 and s["counts"] == {**s["counts"], "succeeded": 2, "failed": 1}
    first, first_batch = rows_by_name(s), s["batch"]
    assert "later.wav does not exist" in first["third"]["error"]
    second_mtime = (out / "second.mp4").stat().st_mtime_ns

    (out / "first.mp4").unlink()  # an output lost since
    shutil.copy(d / "hello.wav", d / "later.wav")  # the failing row fixed (the manifest is the same)
    code, s, _ = batch(capsys, m, "--out", out, "--json", "--resume")
    assert code == 0, s
    assert s["batch"] == first_batch  # the same manifest, the same batch
    rows = rows_by_name(s)
    assert [rows[n]["state"] for n in ("first", "second", "third")] == ["succeeded", "skipped", "succeeded"]
    assert rows["second"]["job"] == first["second"]["job"]  # not run again
    assert rows["first"]["job"] != first["first"]["job"] and rows["third"]["job"] != first["third"]["job"]
    assert (out / "second.mp4").stat().st_mtime_ns == second_mtime
    assert all((out / f"{n}.mp4").is_file() for n in ("first", "second", "third"))
    assert s["shared"]["speech_analyses"] == 1 and s["shared"]["speech_reused"] == 2  # later.wav = hello.wav: analysed once, used by both rows

    code, again, _ = batch(capsys, m, "--out", out, "--json", "--resume")
    assert code == 0 and again["counts"]["skipped"] == 3 and again["batch"] == s["batch"]
    store = JobStore.at_home(home)
    assert len(store.list(batch=s["batch"])) == 5  # 3 first, 2 re-run; the last resume submitted nothing

    # the same manifest without --resume is a new run of every row
    code, fresh, _ = batch(capsys, m, "--out", out, "--json")
    assert code == 0 and fresh["counts"]["succeeded"] == 3 and len(store.list(batch=s["batch"])) == 8


def test_submit_only_then_worker_or_resume(capsys, home, inputs, tmp_path):
    m = inputs["dir"] / "later.jsonl"
    m.write_text('{"name": "a", "face": "face.png", "audio": "hello.wav"}\n'
                 '{"name": "b", "face": "face.png", "audio": "bye.wav"}\n'
                 '{"name": "c", "face": "face.png", "audio": "bye.wav"}\n')
    out = tmp_path / "o"
    code, text, _ = batch(capsys, m, "--out", out, "--submit-only")
    assert code == 0 and "queued 3 rows" in text
    bid = text.split()[1].rstrip(":")
    store = JobStore.at_home(home)
    jobs = store.list(batch=bid)
    assert [j.state for j in jobs] == [JobState.QUEUED] * 3 and not any(out.iterdir())
    # a second plain run would render the rows twice: refused
    code, _, err = batch(capsys, m, "--out", out)
    assert code == 2 and "has 3 unfinished jobs from an earlier run: add --resume" in err
    # a worker for that batch only runs its jobs, and leaves other jobs alone
    other = store.submit({"audio": str(inputs["hello"]), "face": str(inputs["face"]), "output": None})
    assert main(["worker", "--batch", bid, "--once", "--quiet"]) == 0
    capsys.readouterr()
    assert store.get(other.id).state == JobState.QUEUED  # not of the batch: left alone
    assert all(j.state == JobState.SUCCEEDED for j in store.list(batch=bid))
    store.cancel(other.id)
    code, s, _ = batch(capsys, m, "--out", out, "--json", "--resume")
    assert code == 0 and s["counts"]["skipped"] == 3


def test_resume_carries_on_with_queued_rows(capsys, home, inputs, tmp_path):
    m = inputs["dir"] / "carry.jsonl"
    m.write_text('{"name": "x", "face": "face.png", "audio": "hello.wav"}\n'
                 '{"name": "y", "face": "face.png", "audio": "bye.wav"}\n')
    code, text, _ = batch(capsys, m, "--submit-only")
    assert code == 0
    bid = text.split()[1].rstrip(":")
    store = JobStore.at_home(home)
    ids = [j.id for j in store.list(batch=bid)]
    code, s, _ = batch(capsys, m, "--resume", "--json")
    assert code == 0 and s["counts"]["succeeded"] == 2
    assert sorted(r["job"] for r in s["rows"]) == sorted(ids)  # the queued jobs ran, none submitted again
    for r in s["rows"]:  # no --out: the default outputs/<date>/<id>-<name>.mp4
        assert Path(r["output"]).is_file() and Path(r["output"]).name == f"{r['job']}-{r['name']}.mp4"
        assert Path(r["output"]).parent.parent == home / "outputs"


def test_worker_processes(capsys, home, inputs, tmp_path):
    """--concurrency 2: two worker processes take the batch's jobs; the summary is the same."""
    m = inputs["dir"] / "two.json"
    m.write_text(json.dumps([{"name": "p", "face": "face.png", "audio": "hello.wav"},
                             {"name": "q", "face": "face.png", "audio": "bye.wav"}]))
    code, s, err = batch(capsys, m, "--out", tmp_path / "o", "--concurrency", "2", "--json")
    assert code == 0, (s, err)
    assert s["counts"]["succeeded"] == 2 and s["executor"] == "this machine (2 worker processes)" and s["shared"] is None
    workers = {JobStore.at_home(home).events(r["job"])[1]["worker"] for r in s["rows"]}
    assert all(w.startswith("worker-") for w in workers)


def test_usage_errors(capsys, inputs):
    code = main(["batch"])
    assert code == 2 and "give a MANIFEST" in capsys.readouterr().err
    code = main(["batch", str(inputs["dir"] / "x.jsonl"), "--audio", str(inputs["hello"])])
    assert code == 2 and "not both" in capsys.readouterr().err
    code = main(["batch", str(inputs["dir"] / "missing.jsonl")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert main(["batch", "--help"]) == 0
    assert "2 when any row failed" in " ".join(capsys.readouterr().out.split())


def test_command_line_finishing_options_reach_every_row(capsys, home, inputs, tmp_path):
    m = inputs["dir"] / "labels.jsonl"
    m.write_text('{"name": "own", "face": "face.png", "audio": "hello.wav", "label_size": 0.05}\n'
                 '{"name": "given", "face": "face.png", "audio": "bye.wav"}\n')
    code, text, _ = batch(capsys, m, "--out", tmp_path, "--submit-only", "--label-size", "0.03",
                          "--label-opacity", "0.6", "--label-corner", "top-left")
    assert code == 0, text
    store = JobStore.at_home(home)
    try:
        jobs = {j.request["output"].rsplit("/", 1)[-1]: j for j in store.list(batch=text.split()[1].rstrip(":"))}
        for j in jobs.values():
            store.cancel(j.id)
    finally:
        store.close()
    own, given = jobs["own.mp4"].request, jobs["given.mp4"].request
    assert own["label_size"] == 0.05 and given["label_size"] == 0.03  # a row's own value wins
    assert own["label_opacity"] == given["label_opacity"] == 0.6 and given["label_corner"] == "top-left"
    for bad in (("--label-opacity", "3"), ("--lut-strength", "-1"), ("--lut", tmp_path / "none.cube")):
        code, out, err = batch(capsys, m, "--out", tmp_path, "--submit-only", *bad)
        assert_one_line_error(code, err, bad[0])  # the command's error, before any row is queued
        assert not out
