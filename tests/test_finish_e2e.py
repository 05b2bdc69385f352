"""Finishing through `facetalk render`: provenance tags read back with PyAV, the visible
label, a LUT, face detail and an ONNX enhancer, each judged on the MP4 written.

Renders are short (about 1.3 s of speech) and small (256 px), lossless (crf 0) so two
renders can be compared pixel for pixel."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import skimage.data
from PIL import Image

from facetalk.cli import main
from facetalk.eval.metrics import mouth_sharpness
from facetalk.face.detect import detect_landmarks

from .conftest import decode_video, espeak
from .finish_fixtures import write_cube, write_onnx

SIZE = 256


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("finish-in")
    face = d / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(face)
    return {"face": face, "audio": espeak("Hello there, friend.", d / "speech.wav"), "dir": d}


def _render(capsys, inputs, out, *extra) -> tuple[int, str]:
    code = main(["render", "--face", str(inputs["face"]), "--audio", str(inputs["audio"]), "-o", str(out),
                 "--size", str(SIZE), "--still", "--crf", "0", "--quiet", *map(str, extra)])
    return code, capsys.readouterr().err


def _metadata(path) -> dict:
    with av.open(str(path)) as c:
        return dict(c.metadata)


@pytest.fixture(scope="module")
def renders(tmp_path_factory, inputs):
    """The same render with the label (the default) and with --no-label."""
    d = tmp_path_factory.mktemp("finish-out")
    out = {}
    for name, extra in (("labelled", ()), ("plain", ("--no-label",))):
        path = d / f"{name}.mp4"
        assert main(["render", "--face", str(inputs["face"]), "--audio", str(inputs["audio"]), "-o", str(path),
                     "--size", str(SIZE), "--still", "--crf", "0", "--quiet", *extra]) == 0
        out[name] = {"path": path, "frames": decode_video(path)[0], "meta": _metadata(path)}
    return out


def test_provenance_tags_are_read_back(renders):
    meta = renders["labelled"]["meta"]
    job = json.loads(renders["labelled"]["path"].with_suffix(".json").read_text())["job"]
    assert meta["ai_generated"] == "true"
    assert meta["renderer"] == "warp" and meta["identity"] == "none"
    assert meta["job_id"] == job, "the tags name the job that made the video"
    assert meta["label"] == "AI-generated (bottom-right)"
    assert meta["generator"].startswith("facetalk ")
    assert "AI-generated" in meta["comment"] and job in meta["comment"] and job in meta["description"]
    plain = renders["plain"]["meta"]
    assert plain["label"] == "none" and plain["ai_generated"] == "true", "no visible label, still tagged"


def test_label_shows_in_its_corner_only(renders):
    labelled, plain = renders["labelled"]["frames"], renders["plain"]["frames"]
    assert len(labelled) == len(plain) > 10
    for a, b in zip(labelled[::7], plain[::7]):
        changed = np.abs(a.astype(np.int16) - b).max(axis=2) > 2
        ys, xs = np.nonzero(changed)
        assert len(xs) > 200, "the label is visible"
        assert xs.min() > SIZE / 2 and ys.min() > 0.8 * SIZE, "only the bottom-right corner changes"
        box = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.max() > 200, "white text"


def test_label_text_corner_and_identity(capsys, inputs, tmp_path):
    from facetalk.home import facetalk_home
    from facetalk.identity.registry import Registry

    from .identity_fixtures import write_version

    ref = write_version(Registry(facetalk_home()), "finishtest")
    out = tmp_path / "top.mp4"
    code, err = _render(capsys, inputs, out, "--identity", ref, "--renderer", "warp", "--label-corner", "top-left",
                        "--label-text", "Synthetic video")
    assert code == 0, err
    meta = _metadata(out)
    assert meta["identity"] == ref and meta["renderer"] == "warp"
    assert meta["label"] == "Synthetic video (top-left)"
    frame = decode_video(out)[0][5]
    corner = frame[: SIZE // 8, : SIZE // 2].astype(np.int16)
    assert corner.max() > 220 and corner.min() < 60, "white text on a dark box, top left"


def test_lut_swaps_the_colours(capsys, inputs, renders, tmp_path):
    swap = write_cube(tmp_path / "swap.cube")
    out = tmp_path / "graded.mp4"
    code, err = _render(capsys, inputs, out, "--lut", swap, "--no-label")
    assert code == 0, err
    assert _metadata(out)["finish"] == "lut swap.cube"
    graded, plain = decode_video(out)[0], renders["plain"]["frames"]
    for a, b in zip(graded[::9], plain[::9]):
        assert np.abs(a.astype(np.float32) - b[..., ::-1]).mean() < 1.5, "red and blue trade places"
        assert np.abs(a.astype(np.float32) - b).mean() > 20


def test_enhance_sharpens_the_mouth(capsys, inputs, renders, tmp_path, face_models):
    out = tmp_path / "sharp.mp4"
    code, err = _render(capsys, inputs, out, "--enhance", "--no-label")
    assert code == 0, err
    sharp, plain = decode_video(out)[0], renders["plain"]["frames"]
    lms = [detect_landmarks(face_models, f) for f in plain]
    ok = [i for i, lm in enumerate(lms) if lm is not None]
    assert len(ok) > 0.9 * len(plain)
    before = mouth_sharpness([plain[i] for i in ok], [lms[i] for i in ok])
    after = mouth_sharpness([sharp[i] for i in ok], [lms[i] for i in ok])
    assert after > 1.15 * before, f"mouth sharpness {before:.0f} -> {after:.0f}"
    assert np.array_equal(sharp[5][:, :40], plain[5][:, :40]), "far from the face nothing changes"


def test_enhancer_model_runs_on_the_face(capsys, inputs, renders, tmp_path, face_models):
    model = write_onnx(tmp_path / "invert.onnx", op="Neg")  # a model whose work is plain to see
    out = tmp_path / "restored.mp4"
    code, err = _render(capsys, inputs, out, "--enhancer", model, "--no-label")
    assert code == 0, err
    assert _metadata(out)["finish"] == "enhancer invert.onnx"
    got, plain = decode_video(out)[0], renders["plain"]["frames"]
    lm = detect_landmarks(face_models, plain[3])
    nose = (slice(int(lm[28, 1]), int(lm[30, 1])), slice(int(lm[31, 0]), int(lm[35, 0])))
    assert np.abs(got[3][nose].astype(np.float32) - (255 - plain[3][nose].astype(np.float32))).mean() < 8
    assert np.array_equal(got[3][:, :20], plain[3][:, :20]), "far from the face nothing changes"


def _junk_cube(tmp_path):
    p = tmp_path / "junk.cube"
    p.write_text("LUT_3D_SIZE 2\n0 0 0\n")
    return p


@pytest.mark.parametrize("make_args, words", [
    (lambda d: ["--lut", d / "missing.cube"], "does not exist"),
    (lambda d: ["--lut", _junk_cube(d)], "junk.cube"),
    (lambda d: ["--lut", write_cube(d / "ok.cube"), "--lut-strength", "2"], "--lut-strength"),
    (lambda d: ["--enhancer", write_onnx(d / "grey.onnx", shape=(1, 1, 512, 512))], "not a batch of RGB images"),
    (lambda d: ["--enhancer", write_onnx(d / "wide.onnx", shape=(1, 3, 512, 256))], "square"),
    (lambda d: ["--label-text", " "], "--label-text"),
    (lambda d: ["--label-size", "0.9"], "--label-size"),
], ids=["missing-lut", "bad-lut", "strength", "grey-model", "wide-model", "empty-label", "huge-label"])
def test_bad_finishing_input_is_one_line_and_leaves_no_file(capsys, inputs, tmp_path, make_args, words):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = _render(capsys, inputs, out_dir / "x.mp4", *make_args(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facetalk: error:") and words in lines[0], err
    assert not any(p.suffix == ".mp4" for p in out_dir.iterdir()), "no video, whole or partial"


def test_manifest_paths_of_a_lut_are_relative_to_the_manifest(inputs, tmp_path):
    from facetalk.jobs.batch import Batch
    from facetalk.jobs.store import JobStore

    folder = tmp_path / "project"
    (folder / "looks").mkdir(parents=True)
    write_cube(folder / "looks" / "swap.cube")
    manifest = folder / "rows.jsonl"
    manifest.write_text(json.dumps({"name": "a", "face": str(inputs["face"]), "audio": str(inputs["audio"]),
                                    "lut": "looks/swap.cube", "lut-strength": "0.5", "label": "false",
                                    "label_corner": "top-left", "enhance": "yes"}) + "\n"
                        + json.dumps({"name": "b", "face": str(inputs["face"]), "audio": str(inputs["audio"]),
                                      "lut": "looks/none.cube"}) + "\n")
    home = tmp_path / "home"
    batch = Batch.from_manifest(manifest, {}, tmp_path)
    store = JobStore.at_home(home)
    try:
        batch.submit(store, home)
        good, bad = batch.rows
        assert bad.error and "none.cube does not exist" in bad.error
        request = store.get(good.job_id).request
    finally:
        store.close()
    assert request["lut"] == str(folder / "looks" / "swap.cube")
    assert request["lut_strength"] == 0.5 and request["label"] is False and request["enhance"] is True
    assert request["label_corner"] == "top-left"


def test_web_api_takes_a_lut_upload_and_the_finishing_options(inputs, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facetalk.web import ServerConfig, create_app

    home = tmp_path / "home"
    swap = write_cube(tmp_path / "my look.cube")
    files = {"face": ("me.png", inputs["face"].read_bytes()), "audio": ("me.wav", inputs["audio"].read_bytes()),
             "lut": ("my look.cube", swap.read_bytes())}
    with TestClient(create_app(ServerConfig(home=home), studio=False), base_url="http://127.0.0.1") as c:
        r = c.post("/v1/jobs", files=files, data={"enhance": "true", "lut_strength": "0.7", "label": "false",
                                                  "label_text": "Made by AI", "color_match": "histogram"})
        assert r.status_code == 201, r.text
        req = r.json()["request"]
        assert req["lut"].endswith(".cube") and req["lut"] != str(swap), "the upload is kept on the server"
        assert req["enhance"] is True and req["lut_strength"] == 0.7 and req["label"] is False
        assert req["label_text"] == "Made by AI" and req["color_match"] == "histogram"
        # a LUT by path on the server, and the refusals, in one line naming the file as the user named it
        r = c.post("/v1/jobs", json={"face": str(inputs["face"]), "audio": str(inputs["audio"]), "lut": str(swap)})
        assert r.status_code == 201 and r.json()["request"]["lut"] == str(swap)
        bad = {**files, "lut": ("broken look.cube", b"LUT_3D_SIZE 2\n0 0 0\n")}
        r = c.post("/v1/jobs", files=bad)
        assert r.status_code == 422 and "broken look.cube" in r.json()["detail"] and "uploads" not in r.json()["detail"]
        r = c.post("/v1/jobs", files={**files, "lut": ("look.png", swap.read_bytes())})
        assert r.status_code == 422 and "for --lut: use cube" in r.json()["detail"]
        r = c.post("/v1/jobs", json={"face": str(inputs["face"]), "audio": str(inputs["audio"]), "label_corner": "middle"})
        assert r.status_code == 422
        props = c.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
        multipart = props["multipart/form-data"]["schema"]["properties"]
        assert {"lut", "lut_strength", "enhance", "label", "label_text", "color_match"} <= set(multipart)
