"""From a config to the loop's pieces (``build_components``) and the dry run (``check_config``): every
config key reaches the loader, model or loss it names, and a dry run reports instead of failing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lpl_train import engine
from lpl_train.config import validate_config
from lpl_train.data import build_datasets, long_tail_counts, make_loader
from lpl_train.data.fmnist import CLASS_NAMES
from lpl_train.engine.components import _IndexedView, _placeholder_shape
from lpl_train.engine.distributed import DistInfo
from lpl_train.samplers import ClassAwareSampler
from tests.train.test_data_fmnist import make_fmnist
from tests.train.test_engine import OLD_GLOO_TEARDOWN

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fmnist")
    make_fmnist(path)  # 20 training and 4 test images per class
    return path


def cfg(root, data=None, train=None, model=None, loss=None):
    raw = {
        "name": "c",
        "data": {"name": "fmnist", "root": str(root), **(data or {})},
        "model": {"name": "fmnist_cnn", **(model or {})},
        "loss": {"name": "ce", **(loss or {})},
        "schedule": {"epochs": 2},
        "train": {"progress": False, **(train or {})},
    }
    return validate_config(raw)


def test_data_keys_reach_the_loaders(root):
    c = engine.build_components(
        cfg(
            root,
            data={
                "batch_size": 64,
                "eval_batch_size": 50,
                "drop_last": True,
                "augment": "none",
                "params": {"val_fraction": 0.2},
            },
        ),  # fmt: skip
        CPU,
    )
    tr, te = c.train_loader, c.test_loader
    assert (tr.batch_size, tr.drop_last, tr.augment, tr.train) == (64, True, "none", True)
    assert (
        len(tr) == 160 // 64
    )  # 200 images, 40 kept for validation, the last partial batch dropped
    assert (te.batch_size, te.augment, te.train, len(te)) == (50, "none", False, 1)
    assert c.val_loader is not None and len(c.val_loader.images) == 40
    assert c.class_names == CLASS_NAMES and c.class_counts == [16] * 10 and c.num_classes == 10
    auto = engine.build_components(cfg(root), CPU)
    bundle = build_datasets("fmnist", root=root)
    assert auto.train_loader.augment == bundle.augment != "none"  # "auto": the dataset's own recipe
    assert auto.test_loader.augment == "none" and auto.val_loader is None


def test_the_model_is_initialised_from_the_training_seed(root):
    def weights(seed, global_seed):
        torch.manual_seed(global_seed)  # whatever the global state, the config's seed decides
        model = engine.build_components(cfg(root, train={"seed": seed}), CPU).model
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(3, 0), weights(3, 1))
    assert not torch.equal(weights(3, 0), weights(4, 0))


def test_the_batch_is_split_evenly_over_processes(root):
    with pytest.raises(ValueError, match="divisible by the number of processes 3"):
        engine.build_components(cfg(root, data={"batch_size": 64}), CPU, DistInfo(world=3))


def test_each_process_trains_its_slice_of_the_global_batch(root):
    """Under torchrun the config's batch is the global batch: rank r of 2 gets the r-th half of every batch
    of the single-process loader (the same crops, in the same order), and as many batches."""
    c = cfg(root, data={"batch_size": 64}, train={"seed": 1})
    one = engine.build_components(c, CPU).train_loader
    ranks = [
        engine.build_components(c, CPU, DistInfo(rank=r, world=2)).train_loader for r in (0, 1)
    ]
    for loader in (one, *ranks):
        loader.set_epoch(1)
    whole = list(one)
    parts = [list(loader) for loader in ranks]
    assert (
        len(ranks[0]) == len(ranks[1]) == len(one) == len(whole) == len(parts[0]) == 4
    )  # 200 images
    for b, (x, y) in enumerate(whole):
        (x0, y0), (x1, y1) = parts[0][b], parts[1][b]
        assert x0.shape[0] == x1.shape[0] == x.shape[0] // 2  # 32 + 32, then 4 + 4
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # each rank's loader reads and augments its own half only (not the whole batch, to drop half of it)
    assert [loader.shard for loader in ranks] == [(0, 2), (1, 2)] and one.shard == (0, 1)


@pytest.mark.parametrize("world", [2, 3])
def test_each_process_evaluates_its_consecutive_part_of_the_test_set(root, world):
    """Under torchrun the evaluation loaders hold each process's consecutive part of the split (the
    ranks' parts, in rank order, are the whole test set, in order) and say so (``eval_sharded``); one
    process evaluates the whole split."""
    c = cfg(root, data={"batch_size": 60, "eval_batch_size": 7, "params": {"val_fraction": 0.2}})
    whole = engine.build_components(c, CPU)
    assert not whole.eval_sharded
    parts = [engine.build_components(c, CPU, DistInfo(rank=r, world=world)) for r in range(world)]
    assert all(p.eval_sharded for p in parts)
    for split in ("test_loader", "val_loader"):  # 40 test and 40 validation images
        x, y = (torch.cat(t) for t in zip(*getattr(whole, split), strict=True))
        got = [list(getattr(p, split)) for p in parts]
        xs = torch.cat([b[0] for g in got for b in g])
        ys = torch.cat([b[1] for g in got for b in g])
        assert torch.equal(xs, x) and torch.equal(ys, y), split
        sizes = [sum(len(b[1]) for b in g) for g in got]
        assert sizes == [len(t) for t in torch.tensor_split(torch.arange(len(y)), world)]


def test_class_aware_resampling_shards_the_resampled_batches(root):
    """Under DDP the class-aware loader's ranks split the single process's resampled batches, and its
    ``share`` follows the rank's rows of each batch (an uneven last batch over 3 processes)."""
    c = cfg(root, data={"sampler": "class_aware", "batch_size": 30}, train={"seed": 5})
    one = engine.build_components(c, CPU).train_loader
    ranks = [
        engine.build_components(c, CPU, DistInfo(rank=r, world=3)).train_loader for r in range(3)
    ]
    for loader in (one, *ranks):
        loader.set_epoch(1)
    whole = list(one)
    got = [[(x, y, loader.share) for x, y in loader] for loader in ranks]
    assert len(got[0]) == len(got[1]) == len(got[2]) == len(whole)
    m = whole[-1][0].shape[0]
    assert m % 3  # the resampled epoch ends in a batch that does not split evenly
    for b, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([g[b][0] for g in got]), x)
        assert torch.equal(torch.cat([g[b][1] for g in got]), y)
    sizes = [len(part) for part in torch.tensor_split(torch.arange(m), 3)]
    assert [g[-1][2] for g in got] == pytest.approx([n * 3 / m for n in sizes])
    assert all(g[0][2] == 1.0 for g in got)


def test_class_aware_resampling_trains_epoch_e_on_the_sampler_s_epoch_e(root):
    c = engine.build_components(
        cfg(root, data={"sampler": "class_aware", "batch_size": 32, "drop_last": True},
            train={"seed": 5}),
        CPU,
    )  # fmt: skip
    bundle = build_datasets("fmnist", root=root)
    sampler = ClassAwareSampler(bundle.train.targets, seed=5, num_classes=10)
    assert len(c.train_loader) == sampler.num_samples // 32
    keep_last = engine.build_components(
        cfg(root, data={"sampler": "class_aware", "batch_size": 32}), CPU
    )
    assert len(keep_last.train_loader) == -(-sampler.num_samples // 32)  # the partial batch counts
    for epoch in (0, 2):
        inner = make_loader(bundle.train.subset(sampler.indices(epoch)), batch_size=32, train=True,
                            augment=bundle.augment, device=CPU, seed=5, drop_last=True)  # fmt: skip
        inner.set_epoch(epoch)
        c.train_loader.set_epoch(epoch)
        got, want = list(c.train_loader), list(inner)
        assert len(got) == len(want) == len(c.train_loader)
        for (xa, ya), (xb, yb) in zip(got, want, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_an_indexed_view_keeps_targets_and_passes_the_training_flag():
    class Files(torch.utils.data.Dataset):
        targets = torch.tensor([5, 6, 7, 8])
        mean, std = (0.5,), (0.25,)

        def __len__(self):
            return 4

        def get(self, i, generator=None, train=False):
            return i, train

    view = _IndexedView(Files(), torch.tensor([3, 1]))
    assert view.targets.tolist() == [8, 6] and len(view) == 2 and view.mean == (0.5,)
    assert view.get(0, train=True) == (3, True) and view[1] == (1, False)


# ------------------------------------------------------------------------------------- dry run
def test_a_dry_run_without_data_builds_placeholders_of_the_dataset_s_shape(tmp_path):
    d = {"name": "fmnist_lt", "params": {"imbalance_ratio": 10}}
    n, counts, multi = _placeholder_shape(d, FileNotFoundError("x"))
    assert (
        (n, multi) == (10, False)
        and counts[0] == 6000
        and counts[0] / counts[-1] == pytest.approx(10)
    )
    assert counts == long_tail_counts(10, 6000, 10.0)
    n, counts, _ = _placeholder_shape({"name": "fmnist_lt", "params": {}}, FileNotFoundError("x"))
    assert counts[0] / counts[-1] == pytest.approx(100)  # the dataset's default imbalance
    assert (
        _placeholder_shape({"name": "fmnist", "params": {}}, FileNotFoundError("x"))[1]
        == [6000] * 10
    )
    assert _placeholder_shape({"name": "fmnist_ml_lt", "params": {}}, FileNotFoundError("x"))[2]
    npz = {"name": "cifar_lt_npz", "params": {"variant": "cifar100"}}
    assert _placeholder_shape(npz, FileNotFoundError("x"))[0] == 100  # the variant's class count
    with pytest.raises(FileNotFoundError, match="x"):  # no known shape: the loader's own error
        _placeholder_shape({"name": "imagefolder", "params": {}}, FileNotFoundError("x"))


def test_a_dry_run_never_downloads(tmp_path, monkeypatch):
    import lpl_train.data.fmnist as fm

    def no_network(*a, **k):
        raise AssertionError("a dry run must not download")

    monkeypatch.setattr(fm, "download", no_network)
    info = engine.check_config(
        cfg(tmp_path / "empty", data={"name": "fmnist_lt", "params": {"download": True}})
    )
    assert info["data_error"] and info["num_classes"] == 10


def test_a_dry_run_reports_missing_pretrained_weights(tmp_path, monkeypatch):
    import lpl_train.models as models

    real = models.build_model

    def build(name, num_classes, **kw):
        if "weights" in kw:
            raise FileNotFoundError(f"weights file {kw['weights']!r} not found")
        return real("fmnist_cnn", num_classes)

    monkeypatch.setattr(models, "build_model", build)
    info = engine.check_config(
        cfg(tmp_path / "empty", model={"params": {"weights": "/nowhere/r50.pth"}})
    )
    assert "r50.pth" in info["weights_error"] and info["model_params"] > 0


def test_a_dry_run_checks_the_model_s_output_and_leaves_it_in_training_mode(root, monkeypatch):
    import lpl_train.models as models

    built = []

    def build(name, num_classes, width=None):
        model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, width or num_classes))
        built.append(model)
        return model

    monkeypatch.setattr(models, "build_model", build)
    info = engine.check_config(cfg(root))
    assert info["train_size"] == 200 and built[-1].training
    with pytest.raises(ValueError, match=r"to shape \(2, 3\); expected \(batch, 10\)"):
        engine.check_config(cfg(root, model={"params": {"width": 3}}))


def test_a_dry_run_checks_the_loader_options(root):
    engine.check_config(cfg(root, data={"loader": {"pad_mode": "reflect", "pad": 2}}))
    with pytest.raises(ValueError, match=r"unknown config key 'data.loader.x'; allowed in"):
        engine.check_config(cfg(root, data={"loader": {"x": 1}}))
    with pytest.raises(ValueError, match=r"'data.loader.backend' has value 'gpu'"):
        engine.check_config(cfg(root, data={"loader": {"backend": "gpu"}}))
    with pytest.raises(ValueError, match=r"'data.augment' has value 'rotate'"):
        engine.check_config(cfg(root, data={"augment": "rotate"}))
    with pytest.raises(
        ValueError, match=r"'data.loader.num_workers' has value -1; expected an int"
    ):
        engine.check_config(cfg(root, data={"loader": {"num_workers": -1}}))
    with pytest.raises(ValueError, match=r"'data.sampler_params' .* data.sampler is 'none'"):
        engine.check_config(cfg(root, data={"sampler_params": {"x": 1}}))
    # the class-aware sampler's keys are checked before the data is read: also where it is missing
    bogus = {"sampler": "class_aware", "sampler_params": {"reduce": 2, "bogus": 1}}
    for where in (root, root / "missing"):
        with pytest.raises(ValueError, match=r"unknown config key 'data.sampler_params.bogus'"):
            engine.check_config(cfg(where, data=bogus))
        with pytest.raises(ValueError, match=r"unknown config key 'data.sampler_params.bogus'"):
            engine.build_components(cfg(where, data=bogus), torch.device("cpu"))
        # so are the values every loader checks, under their config key
        for bad, said in (({"pad": -1}, r"'data.loader.pad': pad must be >= 0"),
                          ({"mean": ["a"]}, r"'data.loader.mean': mean must be a sequence"),
                          ({"pad_mode": "edge"}, r"'data.loader.pad_mode': pad_mode must be one")):  # fmt: skip
            for build in (engine.check_config, lambda c: engine.build_components(c, "cpu")):
                with pytest.raises((TypeError, ValueError), match=said):
                    build(cfg(where, data={"sampler": "class_aware", "loader": bad}))
    # the real run refuses them before it reads the data
    with pytest.raises(ValueError, match=r"'data.loader.num_workers' has value 1.5"):
        engine.build_components(
            cfg(root, data={"loader": {"num_workers": 1.5}}), torch.device("cpu")
        )


def test_a_dry_run_refuses_the_loss_compiled_alone_only_where_the_run_compiles_it_alone(
    root, monkeypatch
):
    """``train.compile_loss`` on a feature-level loss is refused as the run refuses it, except where
    ``train.capture = "compile"`` compiles network and loss together: on a CUDA device (``auto`` with CUDA
    there, or ``cuda``); on a CPU that capture is eager, and the loss is compiled alone."""
    isda = {"compile_loss": True}
    with pytest.raises(ValueError, match="ISDALoss works on the features"):
        engine.check_config(cfg(root, train=isda, loss={"name": "isda"}))
    together = {**isda, "capture": "compile", "device": "auto"}
    with pytest.raises(ValueError, match="ISDALoss works on the features"):  # no CUDA here: eager
        engine.check_config(cfg(root, train=together, loss={"name": "isda"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # train.amp = "auto"
    for device in ("auto", "cuda", "cuda:1"):
        on = {**together, "device": device}
        assert engine.check_config(cfg(root, train=on, loss={"name": "isda"}))["loss"] == "ISDALoss"
    with pytest.raises(ValueError, match="ISDALoss works on the features"):  # the device named: CPU
        engine.check_config(cfg(root, train={**together, "device": "cpu"}, loss={"name": "isda"}))
    # under torchrun (a dry run started as the run would be) DDP steps stay eager: compiled alone
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="ISDALoss works on the features"):
        engine.check_config(cfg(root, train={**together, "device": "cuda"}, loss={"name": "isda"}))
    monkeypatch.delenv("WORLD_SIZE")
    # on CUDA every other capture compiles the loss alone (the Trainer's step mode "compile" comes only
    # from capture = "compile")
    for capture in ("graph", "auto", "off"):
        other = {**together, "capture": capture, "device": "cuda"}
        with pytest.raises(ValueError, match="ISDALoss works on the features"):
            engine.check_config(cfg(root, train=other, loss={"name": "isda"}))


def test_the_class_aware_sampler_takes_each_of_its_keywords(root):
    params = {"num_samples_cls": 2, "reduce": 2, "num_samples": 64}
    c = cfg(root, data={"sampler": "class_aware", "sampler_params": params, "batch_size": 32})
    engine.check_config(c)
    assert len(engine.build_components(c, torch.device("cpu")).train_loader) == 2  # 64 in 32s
    bad = {"sampler": "class_aware", "sampler_params": {"num_sample_cls": 2}}
    with pytest.raises(ValueError) as info:
        engine.check_config(cfg(root, data=bad))
    allowed = str(info.value).split("'class_aware': ")[1]
    assert set(allowed.split(", ")) == {"num_samples_cls", "reduce", "num_samples"}
    # of two unknown keys, the first in sorted order is named, as for data.loader
    two = {"sampler": "class_aware", "sampler_params": {"zeta": 1, "alpha": 1}}
    with pytest.raises(ValueError, match=r"unknown config key 'data.sampler_params.alpha'"):
        engine.check_config(cfg(root, data=two))


@OLD_GLOO_TEARDOWN
def test_lpl_train_run_under_torchrun_evaluates_in_parts_as_one_process_would(root, tmp_path):
    """``torchrun --nproc_per_node 2 -m lpl_train run``: every rank trains and evaluates its part; the
    test metrics it records are those one process computes on the whole test set with the model the run
    saved (rank 0's, BatchNorm statistics included)."""
    import json
    import os
    import subprocess
    import sys

    from lpl_train.engine import evaluate, load_run

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    # the CLI's main in each rank, in a process group of the script's own, which it leaves without the
    # gloo teardown that at times aborts as ranks exit (see tests/train/test_engine.exit_without_teardown)
    script = tmp_path / "cli.py"
    script.write_text(
        "import sys, torch\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_engine import exit_without_teardown\n"
        "from lpl_train.__main__ import main\n"
        "torch.distributed.init_process_group('gloo')\n"
        "if main(sys.argv[1:]) == 0:\n"
        "    exit_without_teardown()\n"
        "sys.exit(1)\n"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), "run", "fmnist_lt100_ce", "--epochs", "1", "--quiet", "--out", str(out),
           "--set", f"data.root={json.dumps(str(root))}", "--set", "data.batch_size=32",
           "--set", "data.eval_batch_size=6", "--set", "train.device='cpu'",
           "--set", "data.params.imbalance_ratio=10.0"]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    rec = engine.read_metrics(out)[-1]
    model, config, info = load_run(out)
    test = engine.build_components(config, CPU).test_loader
    want = evaluate(model, test, info["num_classes"], info["class_counts"], info["multi_label"])
    assert rec["test_top1_error"] == pytest.approx(want["top1_error"], abs=1e-9)
    assert rec["test_per_class_acc"] == pytest.approx(want["per_class_acc"], abs=1e-9)
    assert rec["test_loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_a_val_fraction_too_small_for_any_validation_image_is_refused(root):
    """A val_fraction too small to take one image of any class (20 per class: round(0.01 * 20) = 0):
    the run is refused with the reason (it ran without validation, silently), by the dry run too."""
    c = cfg(root, data={"params": {"val_fraction": 0.01}})
    for call in (lambda: engine.build_components(c, CPU), lambda: engine.check_config(c)):
        with pytest.raises(ValueError, match=r"val_fraction=0\.01 leaves no validation sample"):
            call()
    assert engine.build_components(
        cfg(root, data={"params": {"val_fraction": 0.05}}), CPU
    ).val_loader


def test_a_dry_run_s_data_cache_keeps_each_data_seed_apart(root):
    """``data_cache`` holds one entry per distinct ``[data]`` table: two data seeds are two datasets."""
    from lpl_train.engine.components import check_config

    cache: dict = {}
    for seed in (0, 1, 0):
        check_config(cfg(root, data={"seed": seed, "params": {"val_fraction": 0.5}}), cache)
    assert len(cache) == 2


def test_a_loss_that_draws_random_numbers_takes_the_runs_seed():
    """DisturbLabel's draws were seeded with its own seed (0 in every config) whatever train.seed was, so
    every seed of a sweep disturbed the same batch positions alike. The engine now passes train.seed as
    the loss's seed unless loss.params sets one; a loss without randomness ignores it."""
    from lpl_train.config import load_config
    from lpl_train.engine.components import _loss_without_data
    from lpl_train.losses import build_loss

    name = "ti_cifar10_resnet110_disturb_label"
    for overrides, seed in ((["train.seed=3"], 3), (["train.seed=3", "loss.params.seed=7"], 7)):
        loss, _ = _loss_without_data(load_config(name, overrides))
        assert loss.seed == seed, overrides
    y = torch.arange(64) % 10
    a, b = (_loss_without_data(load_config(name, [f"train.seed={s}"]))[0] for s in (0, 1))
    assert not torch.equal(a.disturb(y, 10), b.disturb(y, 10))
    assert build_loss("ce", seed=5).__class__.__name__ == "CrossEntropyLoss"


@pytest.mark.parametrize("data", ["fmnist", "fmnist_ml_lt"])
@pytest.mark.parametrize("loss", ["lpl", "ce", "ml_lpl", "bce"])
def test_a_loss_of_the_other_label_kind_is_refused_before_training(root, tmp_path, data, loss):
    """A single-label loss on multi-hot targets (or the reverse) is named in one line, by the run and by
    the dry run (also without the data, from the dataset's placeholder); matching kinds build. With
    ``validate = false`` the loss itself would not have refused it."""
    multi_data, multi_loss = data == "fmnist_ml_lt", loss in ("ml_lpl", "bce")
    params = {"num_train": 40, "num_test": 20} if multi_data else {}
    lp = {"validate": False} if loss in ("lpl", "ml_lpl") else {}
    c = cfg(root, data={"name": data, "params": params}, loss={"name": loss, "params": lp})
    missing = cfg(tmp_path / "none", data={"name": data, "params": params}, loss={"name": loss})
    if multi_data == multi_loss:
        assert engine.build_components(c, CPU).multi_label == multi_data
        assert engine.check_config(c)["multi_label"] == multi_data
        return
    kind = "multi-label" if multi_data else "single-label"
    want = rf"^config key 'loss\.name' has value '{loss}', a \w+-label loss, but data '{data}' is {kind}"
    for call in (
        lambda: engine.build_components(c, CPU),
        lambda: engine.check_config(c),
        lambda: engine.check_config(missing),
    ):
        with pytest.raises(ValueError, match=want):
            call()


@pytest.mark.parametrize(
    ("section", "params", "key", "exc"),
    [
        ("model", {"width": 0}, "model.params.width", ValueError),
        ("model", {"foo": 1}, "model.params", ValueError),
        ("loss", {"drw_epoch": -1}, "loss.params.drw_epoch", ValueError),
        ("loss", {"foo": 1}, "loss.params", ValueError),
    ],
)
def test_a_model_s_or_loss_s_own_error_names_the_config_key(root, section, params, key, exc):
    """The run and the dry run: the model's or loss's message, prefixed with the config key it came from
    (the parameter's own where the message starts with it)."""
    loss = {"name": "lpl", "params": params if section == "loss" else {}}
    c = cfg(root, model={"params": params if section == "model" else {}}, loss=loss)
    for call in (lambda: engine.build_components(c, CPU), lambda: engine.check_config(c)):
        with pytest.raises(exc, match=rf"^config key '{key}': "):
            call()


def test_a_dry_run_under_torchrun_refuses_what_its_processes_would(root, monkeypatch):
    """Started by torchrun (WORLD_SIZE), the dry run checks what the processes need, as the run does: a
    batch they divide, and SyncBatchNorm only on CUDA (it said 'would start' where the run then failed)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    odd = cfg(root, data={"batch_size": 67})
    for call in (
        lambda: engine.check_config(odd),
        lambda: engine.build_components(odd, CPU, DistInfo(0, 0, 2)),
    ):
        with pytest.raises(
            ValueError,
            match=r"^data\.batch_size=67 must be divisible by the number of processes 2$",
        ):
            call()
    sync = cfg(root, train={"sync_batchnorm": True, "device": "cpu"})
    with pytest.raises(
        ValueError, match=r"^config key 'train\.sync_batchnorm' is true but the device is cpu"
    ):
        engine.check_config(sync)
    assert engine.check_config(cfg(root, data={"batch_size": 64}))["loss"] == "CrossEntropyLoss"
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: neither applies
    assert (
        engine.check_config(odd)["loss"] == engine.check_config(sync)["loss"] == "CrossEntropyLoss"
    )
