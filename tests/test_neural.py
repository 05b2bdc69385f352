"""The neural renderer's model, its LoRA adapters (peft), training and loading, on a tiny
base model trained a few steps on generated faces (CPU, seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from facetalk.errors import IdentityError
from facetalk.identity.registry import Registry
from facetalk.neural.adapters import BaseModelPool, save_adapter
from facetalk.neural.check import ModelError, check_base, sha256_file
from facetalk.neural.config import ModelConfig
from facetalk.neural.data import batch_arrays, mask_row
from facetalk.neural.model import masked_input
from facetalk.neural.store import load_base
from facetalk.neural.train import train_adapter, train_base

from .neural_fixtures import (
    TINY,
    synthetic_samples,
    tiny_base,
    tiny_settings,
    write_talking_identity,
)

TARGETS = ["conv1", "conv2", "qkv", "proj"]  # name suffixes: every block conv and the attention


# How far two computations of the same model output may be apart.
#
# The output is an image in about [0, 1] (MouthUNet, residual), rounded to 8 bits when
# rendered: one level is 1/255 = 0.0039. Two different paths to the same numbers add the
# same products in another order and so differ in the last bits of float32: the model
# right after training (its LoRA weights still requiring grad) against the same weights
# reloaded frozen into a BaseModelPool (at::matmul batches the attention's Linear layers
# differently when a weight requires grad), the unmerged adapter against its weights
# fused, and, on any path, the kernels oneDNN, MKL and ATen pick per CPU (AVX-512, AVX2,
# plain) and thread count. Each reordering moves a sum by a few ulps (6e-8 at 1.0);
# through the ~20 layers here the outputs differ by at most 1.2e-7 (measured with AVX2,
# with ATen's default kernels, and with oneDNN and MKL held to SSE4). ATOL is ~1000 times
# that, still 1/40 of an 8-bit level, and far below what an adapter changes (ann and bob
# differ by up to 0.056, ann and the bare base by 0.02; MIN_EFFECT is checked on those).
# Exact equality is asserted only for the same computation run again in this process
# (the same module and weights on the same inputs, one thread, deterministic algorithms),
# and for weights, which are stored, not computed.
ATOL = 1e-4
MIN_EFFECT = 10 * ATOL


def assert_same_output(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=ATOL)


def differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) > MIN_EFFECT


@pytest.fixture(scope="module", autouse=True)
def _one_thread_deterministic():
    """Tiny models: one intra-op thread (two spin against each other on a busy 2-core
    machine), and deterministic algorithms, which the exact comparisons below rest on."""
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_num_threads(before[0])
    torch.use_deterministic_algorithms(before[1])


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("neural") / "base")


@pytest.fixture(scope="module")
def inputs() -> tuple:
    """A batch of model inputs (masked target, reference, mouth drawing) of a person no adapter saw."""
    s = synthetic_samples([2], 6, TINY.size, seed=7)
    a = {k: torch.from_numpy(v) for k, v in batch_arrays(s, np.array([0, 1, 2]), np.array([3, 4, 5])).items()}
    return masked_input(a["target"], mask_row(TINY.size)), a["reference"], a["cond"]


def _fit(base_dir: Path, person: int, folder: Path, name: str, inputs) -> torch.Tensor:
    """Train an adapter for a generated person, save it to folder; its output on inputs right after training."""
    base = load_base(base_dir)
    model, _ = train_adapter(base, synthetic_samples([person], 8, TINY.size), folder / "work", 4, 8.0, TARGETS,
                             tiny_settings(4, lr=1e-2), name=name)
    save_adapter(model, name, folder, base)
    with torch.inference_mode():
        return model(*inputs)


@pytest.fixture(scope="module")
def adapters(base_dir, tmp_path_factory, inputs) -> dict:
    root = tmp_path_factory.mktemp("adapters")
    return {p: (root / p, _fit(base_dir, i, root / p, p, inputs)) for p, i in (("ann", 0), ("bob", 1))}


def test_adapter_round_trip_gives_the_same_outputs(base_dir, adapters, inputs):
    folder, trained = adapters["ann"]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8.0
    assert config["base_model_name_or_path"] == f"facetalk-base:tiny@sha256:{sha256_file(base_dir / 'model.safetensors')}"
    pool = BaseModelPool(base_dir)
    pool.add("ann", folder)
    assert_same_output(pool.run("ann", *inputs), trained)  # another path to the same numbers: ATOL


def test_two_adapters_differ_and_switching_back_restores_the_first(base_dir, adapters, inputs):
    pool = BaseModelPool(base_dir)
    bare = pool.run(None, *inputs)
    pool.add("ann", adapters["ann"][0])
    pool.add("bob", adapters["bob"][0])
    ann, bob = pool.run("ann", *inputs), pool.run("bob", *inputs)
    assert differ(ann, bob) and differ(ann, bare)
    # the same modules and weights run again in this process: bit for bit
    assert torch.equal(pool.run("ann", *inputs), ann)  # switched back: exactly the first
    assert torch.equal(pool.run(None, *inputs), bare)  # the bare base is untouched
    assert_same_output(ann, adapters["ann"][1])  # the model as trained, another path: ATOL


def test_merge_gives_the_same_frames(base_dir, adapters, inputs):
    pool = BaseModelPool(base_dir)
    pool.add("ann", adapters["ann"][0])
    unmerged = pool.run("ann", *inputs)
    merged = pool.run("ann", *inputs, merge=True)
    assert_same_output(merged, unmerged)  # W + BA fused rounds differently from W x + B(A x): ATOL
    assert not any("lora" in n for n, _ in pool.merged("ann").named_modules())
    assert torch.equal(pool.run("ann", *inputs), unmerged)  # the shared base is not fused (same computation again)


def test_only_the_lora_weights_train(base_dir):
    base = load_base(base_dir)
    before = {k: v.clone() for k, v in base.module.state_dict().items()}
    model, _ = train_adapter(base, synthetic_samples([2], 6, TINY.size), base_dir.parent / "w", 4, 8.0, TARGETS,
                             tiny_settings(2, lr=1e-2), name="x")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A.x." in n or ".lora_B.x." in n for n in trainable)
    state = model.get_base_model().state_dict()
    for k, v in before.items():  # every base weight unchanged (peft keeps them as base_layer)
        key = k if k in state else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state[key], v), k
    n_lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    assert 0 < n_lora < sum(v.numel() for v in before.values())


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def test_broken_adapters_are_refused_with_one_line(base_dir, adapters, tmp_path):
    pool = BaseModelPool(base_dir)
    good = adapters["ann"][0]

    corrupt = _copy(good, tmp_path / "corrupt")
    data = (corrupt / "adapter_model.safetensors").read_bytes()
    (corrupt / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="adapter_model.safetensors is unreadable or corrupted"):
        pool.add("c", corrupt)

    no_config = _copy(good, tmp_path / "noconfig")
    (no_config / "adapter_config.json").unlink()
    with pytest.raises(ModelError, match="adapter_config.json is missing"):
        pool.add("c", no_config)

    renamed = _copy(good, tmp_path / "renamed")
    (renamed / "adapter_model.safetensors").rename(renamed / "ann.safetensors")
    with pytest.raises(ModelError, match="rename ann.safetensors back to adapter_model.safetensors"):
        pool.add("c", renamed)

    pickled = _copy(good, tmp_path / "pickled")
    from safetensors.torch import load_file

    torch.save(load_file(str(pickled / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="adapter_model.bin is a pickle file"):
        pool.add("c", pickled)

    wrong_rank = _copy(good, tmp_path / "rank")
    cfg = json.loads((wrong_rank / "adapter_config.json").read_text())
    (wrong_rank / "adapter_config.json").write_text(json.dumps(cfg | {"r": 8}))
    with pytest.raises(ModelError, match="rank 4 in adapter_model.safetensors but r=8"):
        pool.add("c", wrong_rank)
    assert pool.adapters == []  # nothing half-loaded


def test_an_adapter_of_another_base_is_refused(base_dir, adapters, tmp_path):
    good = adapters["ann"][0]
    other = tiny_base(tmp_path / "other", steps=1)  # same layers, other weights
    with pytest.raises(ModelError, match=r"trained on base tiny \(sha256 [0-9a-f]{12}\), not this base"):
        BaseModelPool(other).add("ann", good)
    wide = ModelConfig(size=64, channels=(8, 16, 48), groups=4, heads=2)  # other layer sizes
    train_base(synthetic_samples([0], 4, 64), tmp_path / "wide", wide, tiny_settings(1), name="tiny")
    restamped = _copy(good, tmp_path / "restamped")  # even with a matching stamp, the sizes must fit
    cfg = json.loads((restamped / "adapter_config.json").read_text())
    sha = sha256_file(tmp_path / "wide" / "model.safetensors")
    (restamped / "adapter_config.json").write_text(json.dumps(cfg | {"base_model_name_or_path": f"facetalk-base:tiny@sha256:{sha}"}))
    with pytest.raises(ModelError, match=r"size mismatch at \w+\.\d\.conv1: the adapter is 64->32 channels"):
        BaseModelPool(tmp_path / "wide").add("ann", restamped)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickle_base_needs_trust_and_loads_weights_only(base_dir, tmp_path, inputs):
    folder = _copy(base_dir, tmp_path / "pickled")
    from safetensors.torch import load_file

    torch.save(load_file(str(folder / "model.safetensors")), folder / "model.pth")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.pth is a pickle file.*--trust-pickle"):
        load_base(folder)
    assert check_base(folder, trust_pickle=True).pickle
    trusted, plain = load_base(folder, trust_pickle=True), load_base(base_dir)
    a, b = trusted.module.state_dict(), plain.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same weights, bit for bit
    with torch.inference_mode():  # so the same computation, in this process: the same output
        assert torch.equal(trusted.module(*inputs), plain.module(*inputs))
    (folder / "model.pth").write_bytes(b"\x80\x04not a state dict")
    with pytest.raises(ModelError, match="does not load with weights_only=True"):
        load_base(folder, trust_pickle=True)


class _Stop(Exception):
    pass


def test_training_resumes_to_the_same_result(tmp_path):
    samples = synthetic_samples([0, 1], 8, TINY.size)
    settings = tiny_settings(6, checkpoint_every=3)
    train_base(samples, tmp_path / "straight", TINY, settings)

    def interrupt(info):
        if info.step == 5:  # after the checkpoint at step 3: steps 4-5 are lost
            raise _Stop

    with pytest.raises(_Stop):
        train_base(samples, tmp_path / "resumed", TINY, settings, on_step=interrupt)
    assert (tmp_path / "resumed" / "checkpoint" / "state.safetensors").is_file()
    seen = []
    train_base(samples, tmp_path / "resumed", TINY, settings, on_step=lambda i: seen.append((i.step, i.resumed_from)))
    assert seen[0] == (4, 3)
    # the same weights, bit for bit (the files' metadata hold each run's own wall time): the
    # same steps on the same data in this process, one thread, deterministic algorithms
    from safetensors.torch import load_file

    straight, resumed = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not (tmp_path / "resumed" / "checkpoint").exists()
    with pytest.raises(ModelError, match="checkpoint .* is of another run"):
        from facetalk.neural.model import MouthUNet
        from facetalk.neural.train import Trainer

        t = Trainer(MouthUNet(TINY), samples, settings, tmp_path / "straight", {"kind": "base"})
        t.save_checkpoint()
        Trainer(MouthUNet(TINY), samples, tiny_settings(6, lr=1e-4), tmp_path / "straight", {"kind": "base"}).run()


def test_identity_train_makes_a_new_version_the_renderer_loads(base_dir, tmp_path):
    from click.testing import CliRunner

    from facetalk.cli import cli
    from facetalk.render.base import get_renderer

    home = tmp_path / "home"
    reg = Registry(home)
    write_talking_identity(reg, "ann", 0)
    shutil.copytree(base_dir, home / "models" / "tiny")
    result = CliRunner().invoke(cli, ["identity", "--home", str(home), "train", "ann", "--rank", "4", "--alpha", "8",
                                      "--target-modules", "conv1,conv2,qkv,proj", "--steps", "3", "--batch", "2",
                                      "--preview-every", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "created ann@v2" in result.output and "from ann@v1" in result.output
    identity = reg.load("ann@v2")
    entry = identity.manifest["adapter"]
    assert entry["kind"] == "lora" and entry["rank"] == 4 and entry["base"]["name"] == "tiny"
    assert entry["base"]["sha256"] == sha256_file(base_dir / "model.safetensors")
    assert set(identity.manifest["files"]) >= {"adapter_config.json", "adapter_model.safetensors", "face.mp4"}
    assert identity.manifest["derived_from"] == "ann@v1" and reg.latest("ann") == 1
    r = get_renderer("neural", identity=identity, base=None, merge=False, home=home)
    assert r.adapter in r.pool.adapters

    # export / import carries the adapter with the version, byte for byte
    from facetalk.identity.archive import export_identity, import_identity

    ref = import_identity(reg, export_identity(reg, "ann@v2", tmp_path / "ann.zip"), name="bob")
    copied = reg.load(ref)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        assert (copied.path / f).read_bytes() == (identity.path / f).read_bytes()
    assert copied.manifest["adapter"] == entry

    # the adapter checks verify runs beyond the hashes (on a copy whose hashes are not checked)
    from facetalk.identity.registry import check_adapters

    copy = _copy(identity.path, tmp_path / "copy")
    cfg = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps(cfg | {"r": 8}))
    with pytest.raises(IdentityError, match="ann@v2: .*rank 4 in adapter_model.safetensors but r=8.*facetalk identity train ann"):
        check_adapters("ann@v2", copy, identity.manifest, "fix", home=home)
    (copy / "adapter_config.json").write_text(json.dumps(cfg | {"base_model_name_or_path": "facetalk-base:x@sha256:" + "0" * 64}))
    with pytest.raises(IdentityError, match="stamped with base sha256 000000000000 but identity.json with"):
        check_adapters("ann@v2", copy, identity.manifest, "fix", home=home)

    # a broken adapter in the version: one line naming the file
    (identity.path / "adapter_model.safetensors").chmod(0o644)
    with open(identity.path / "adapter_model.safetensors", "r+b") as f:
        f.truncate(100)
    with pytest.raises(IdentityError, match="ann@v2: adapter_model.safetensors has changed or is corrupted"):
        reg.load("ann@v2")


def test_renderer_needs_a_base_or_a_trained_identity():
    from facetalk.errors import FacetalkError
    from facetalk.render.base import get_renderer

    with pytest.raises(FacetalkError, match="needs a base model"):
        get_renderer("neural")


def test_cli_base_show(base_dir):
    from click.testing import CliRunner

    from facetalk.cli import cli

    out = CliRunner().invoke(cli, ["base", "show", str(base_dir)])
    assert out.exit_code == 0 and "tiny: ok" in out.output and "parameters" in out.output


def test_identity_train_from_scratch_needs_no_base(tmp_path):
    from click.testing import CliRunner

    from facetalk.cli import cli
    from facetalk.render.base import get_renderer

    home = tmp_path / "home"
    reg = Registry(home)
    write_talking_identity(reg, "bob", 1)
    result = CliRunner().invoke(cli, ["identity", "--home", str(home), "train", "bob", "--from-scratch", "--size", "64",
                                      "--channels", "8,16,32", "--steps", "2", "--batch", "2", "--gan-weight", "0",
                                      "--preview-every", "0", "--quiet", "--promote"])
    assert result.exit_code == 0, result.output
    assert "created bob@v2 (latest)" in result.output and "model of" in result.output
    identity = reg.load("bob")
    assert identity.version == 2 and identity.manifest["adapter"]["kind"] == "model"
    r = get_renderer("neural", identity=identity)
    assert r.adapter is None and r.pool.base.folder == identity.path


def test_a_worker_loads_the_base_once_and_switches_adapters_per_job(base_dir, tmp_path):
    """Jobs of two identities with adapters on one base, run by one worker (one JobCache):
    the base is loaded once, both adapters live in it, and each job's frames are those of
    the same job rendered alone."""
    from click.testing import CliRunner

    from facetalk.cli import cli
    from facetalk.jobs.runner import JobCache
    from facetalk.pipeline import RenderRequest, render

    from .conftest import decode_video, espeak

    home = tmp_path / "home"
    reg = Registry(home)
    shutil.copytree(base_dir, home / "models" / "tiny")
    for person, name in ((0, "ann"), (1, "bob")):
        write_talking_identity(reg, name, person)
        result = CliRunner().invoke(cli, ["identity", "--home", str(home), "train", name, "--rank", "4", "--alpha", "8",
                                          "--target-modules", ",".join(TARGETS), "--steps", "2", "--batch", "2",
                                          "--preview-every", "0", "--quiet"])
        assert result.exit_code == 0, result.output
    audio = espeak("one two", tmp_path / "a.wav")

    def request(name: str, out: str) -> RenderRequest:
        return RenderRequest(identity=f"{name}@v2", audio=str(audio), output=str(tmp_path / out), renderer="neural",
                             crf=0)  # v2: the version `identity train` made

    cache = JobCache(home)
    shared = {name: render(request(name, f"{name}-shared.mp4"), registry=cache.registry, cache=cache)
              for name in ("ann", "bob", "ann")}
    assert cache.stats()["bases_loaded"] == 1 and cache.stats()["bases_reused"] == 2
    (pool,) = cache.pools
    assert sorted(pool.adapters) == ["ann_v2", "bob_v2"]
    assert shared["ann"].identity == "ann@v2" and shared["bob"].identity == "bob@v2"

    # rendered alone: another pool holding one adapter, frozen like the shared one, so each
    # frame is the same computation in this process (peft runs only the active adapter),
    # and crf 0 is lossless: the frames are equal bit for bit
    alone = {name: render(request(name, f"{name}-alone.mp4"), registry=Registry(home)) for name in ("ann", "bob")}
    frames = {}
    for name in ("ann", "bob"):
        a, _ = decode_video(alone[name].output)
        b, _ = decode_video(shared[name].output)
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), name
        frames[name] = a
    assert any(not np.array_equal(x, y) for x, y in zip(frames["ann"], frames["bob"]))
