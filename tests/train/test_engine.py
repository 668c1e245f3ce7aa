"""Training engine: schedules, resume bit-exactness, atomic checkpoints, NaN stop, metrics, DDP."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lpl_train import engine
from lpl_train.config import validate_config
from lpl_train.engine import (
    Components,
    TrainingDiverged,
    atomic_save,
    fit,
    load_checkpoint,
    lr_factor,
)

torch.set_flush_denormal(True)


C, D, N_TRAIN, N_TEST = 4, 6, 96, 40


# ------------------------------------------------------------------------------------- stand-ins
class TinyNet(nn.Module):
    """forward_features / classifier split like the package's models; dropout exercises the RNG."""

    def __init__(self, num_classes: int = C, dropout: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


class TinyLoader:
    """Batch order and noise depend only on (seed, epoch), like lpl_train.data loaders."""

    def __init__(self, x, y, batch_size, train, seed=0, fail_at=None):
        self.x, self.y, self.bs, self.train, self.seed = x, y, batch_size, train, seed
        self.epoch, self.fail_at = 0, fail_at

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.bs)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = (
            torch.randperm(len(self.x), generator=g) if self.train else torch.arange(len(self.x))
        )
        noise = 0.05 * torch.randn(self.x.shape, generator=g)  # per sample: batch-size independent
        for i in range(len(self)):
            if self.fail_at == (self.epoch, i):
                raise KeyboardInterrupt("simulated kill")
            idx = order[i * self.bs : (i + 1) * self.bs]
            x = self.x[idx] + noise[idx] if self.train else self.x[idx]
            yield x, self.y[idx]


def make_data(multi_label: bool = False, seed: int = 123):
    g = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(C, D, generator=g)
    n = N_TRAIN + N_TEST
    y = torch.arange(n) % C
    x = centers[y] + torch.randn(n, D, generator=g)
    if multi_label:
        y2 = (y + 1) % C
        x = x + centers[y2]
        t = torch.zeros(n, C)
        t[torch.arange(n), y] = 1
        t[torch.arange(n), y2] = 1
        y = t
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def make_components(
    multi_label=False, loss=None, fail_at=None, batch_size=16, init_seed=0, dropout=0.2
):
    (xtr, ytr), (xte, yte) = make_data(multi_label)
    torch.manual_seed(init_seed)
    model = TinyNet(dropout=dropout)
    if loss is None:
        loss = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
    counts = (ytr.sum(0) if multi_label else torch.bincount(ytr, minlength=C)).long().tolist()
    return Components(
        model=model,
        loss=loss,
        train_loader=TinyLoader(xtr, ytr, batch_size, True, fail_at=fail_at),
        test_loader=TinyLoader(xte, yte, 32, False),
        num_classes=C,
        class_counts=counts,
        multi_label=multi_label,
    )


def make_cfg(epochs=4, **train):
    return validate_config(
        {
            "name": "tiny",
            "data": {"name": "tiny"},
            "model": {"name": "tiny"},
            "loss": {"name": "ce"},
            "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
            "schedule": {"epochs": epochs, "kind": "cosine", "warmup_epochs": 1},
            "train": {"device": "cpu", "progress": False, "loss_variation": False, **train},
        }
    )


def quiet(_msg: str) -> None:
    pass


def state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def strip_timing(records):
    return [
        {k: v for k, v in r.items() if k not in ("train_time_s", "images_per_s", "train_end")}
        for r in records
    ]


# ------------------------------------------------------------------------------------- schedule
LDAM = {
    "epochs": 200,
    "kind": "step",
    "milestones": [160, 180],
    "factors": [0.01, 0.0001],
    "warmup_epochs": 5,
}


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0, 0.2),
        (1, 0.4),
        (4, 1.0),
        (5, 1.0),
        (159, 1.0),
        (160, 0.01),
        (179, 0.01),
        (180, 1e-4),
        (199, 1e-4),
    ],
)
def test_lr_factor_ldam_recipe(epoch, expected):
    # LDAM: lr·e/5 for e = 1..5, then ×0.01 after epoch 160 and ×0.0001 after 180
    assert lr_factor(epoch, 3, 100, LDAM) == pytest.approx(expected, rel=1e-12)


def test_lr_factor_gamma_cosine_and_iteration_warmup():
    isda = {"epochs": 160, "kind": "step", "milestones": [80, 120], "gamma": 0.1}
    assert lr_factor(79, 0, 10, isda) == 1.0
    assert lr_factor(80, 0, 10, isda) == pytest.approx(0.1)
    assert lr_factor(120, 0, 10, isda) == pytest.approx(0.01)
    cos = {"epochs": 10, "kind": "cosine"}
    assert lr_factor(0, 0, 4, cos) == 1.0
    assert lr_factor(5, 0, 4, cos) == pytest.approx(0.5)  # halfway through 40 iterations
    assert lr_factor(7, 2, 4, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 30 / 40)))
    db = {"epochs": 8, "kind": "step", "milestones": [5, 7], "gamma": 0.1, "warmup_iters": 500,
          "warmup_start_factor": 1 / 3}  # fmt: skip
    assert lr_factor(0, 0, 100, db) == pytest.approx(1 / 3)
    assert lr_factor(2, 50, 100, db) == pytest.approx(1 / 3 + (2 / 3) * 250 / 500)
    assert lr_factor(5, 0, 100, db) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="iters_per_epoch"):
        lr_factor(0, 0, 0, cos)


def test_select_device():
    assert engine.select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        engine.select_device("tpu")
    if not torch.cuda.is_available():
        assert engine.select_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            engine.select_device("cuda")


@pytest.mark.parametrize("before", [False, True])
def test_fit_flushes_denormals_while_it_trains_and_gives_back_the_callers_setting(tmp_path, before):
    """Denormals are flushed in every training step (the records were made so), and fit leaves the
    caller's process as it found it: library code changes no global flag for good."""
    from lpl_train.engine.devices import _flushing_denormals

    comps = make_components()
    seen: list[bool] = []
    comps.model.register_forward_hook(lambda *_: seen.append(_flushing_denormals()))
    torch.set_flush_denormal(before)
    try:
        assert _flushing_denormals() is before
        fit(make_cfg(epochs=1), tmp_path / "run", components=comps, log=quiet)
        after = _flushing_denormals()
    finally:
        torch.set_flush_denormal(True)  # this module's setting
    assert seen and all(seen)
    assert after is before


# ------------------------------------------------------------------------------------- resume
def test_resume_after_clean_stop_is_bit_exact(tmp_path):
    cfg = make_cfg(epochs=4)
    full = tmp_path / "full"
    fit(cfg, full, components=make_components(), log=quiet)
    part = tmp_path / "part"
    fit(cfg, part, components=make_components(), stop_after_epoch=2, log=quiet)
    assert load_checkpoint(part / "checkpoint.pt")["epoch"] == 2
    assert not (part / "final.json").exists()
    # a fresh process would build a differently initialised model: the checkpoint must win
    fit(cfg, part, components=make_components(init_seed=99), resume=True, log=quiet)
    a, b = state(full), state(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra, rb = engine.read_metrics(full), engine.read_metrics(part)
    assert [r["epoch"] for r in rb] == [0, 1, 2, 3]
    assert strip_timing(ra) == strip_timing(rb)


def test_resume_continues_the_global_step_count(tmp_path):
    """The checkpoint's global step counts every step of the run, across a resume: 4 epochs of
    ceil(96 / 16) = 6 steps (a resumed run that restarted it at 0 would name the wrong step in
    diverged.json)."""
    cfg = make_cfg(epochs=4)
    part = tmp_path / "part"
    fit(cfg, part, components=make_components(), stop_after_epoch=2, log=quiet)
    assert load_checkpoint(part / "checkpoint.pt")["step"] == 2 * 6
    fit(cfg, part, components=make_components(), resume=True, log=quiet)
    assert load_checkpoint(part / "checkpoint.pt")["step"] == 4 * 6


@pytest.mark.parametrize("stop", [2, 5])
def test_stopping_at_or_after_the_last_epoch_finishes_the_run(tmp_path, stop):
    """``stop_after_epoch`` at or past the run's 2 epochs stops nothing: the run ends as a whole run does,
    with ``final.json``, and ``fit`` returns its content."""
    out = tmp_path / "r"
    got = fit(make_cfg(epochs=2), out, components=make_components(), stop_after_epoch=stop,
              log=quiet)  # fmt: skip
    assert (out / "final.json").is_file()
    assert got["epochs"] == 2 and "final" in got
    assert [r["epoch"] for r in engine.read_metrics(out)] == [0, 1]


def test_time_left_after_a_resume_is_rated_on_the_epochs_this_process_trained():
    """The summary line's time left: a run resumed at epoch 8 of 10 that trained its epoch 8 here in 5 s
    has one epoch left, about 5 s (not 5 s spread over the 9 epochs of the whole run)."""
    from lpl_train.engine.trainer import _Trainer

    run = types.SimpleNamespace(epoch=8, cfg={"schedule": {"epochs": 10}})
    assert _Trainer.eta(run, 8, time.perf_counter() - 5.0) == pytest.approx(5.0, abs=0.5)


def test_resume_after_kill_mid_epoch_is_bit_exact(tmp_path):
    cfg = make_cfg(epochs=4)
    full = tmp_path / "full"
    fit(cfg, full, components=make_components(), log=quiet)
    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, run, components=make_components(fail_at=(2, 3)), log=quiet)
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2  # epochs 0, 1 completed
    assert [r["epoch"] for r in engine.read_metrics(run)] == [0, 1]
    fit(cfg, run, components=make_components(), resume=True, log=quiet)
    for k, v in state(full).items():
        assert torch.equal(v, state(run)[k]), k
    assert (
        json.loads((run / "final.json").read_text())["final"]
        == json.loads((full / "final.json").read_text())["final"]
    )


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    cfg = make_cfg(epochs=3)
    run = tmp_path / "r"
    fit(cfg, run, components=make_components(), stop_after_epoch=1, log=quiet)
    with open(
        run / "metrics.jsonl", "a"
    ) as fh:  # killed after logging epoch 1, before its checkpoint
        fh.write(json.dumps({"epoch": 1, "train_loss": 123.0}) + "\n" + '{"epoch": 2, "trunc')
    fit(cfg, run, components=make_components(), resume=True, log=quiet)
    recs = engine.read_metrics(run)
    assert [r["epoch"] for r in recs] == [0, 1, 2]
    assert recs[1]["train_loss"] != 123.0


def test_resume_refuses_other_config_and_fresh_run_refuses_existing_checkpoint(tmp_path):
    run = tmp_path / "r"
    fit(make_cfg(epochs=2), run, components=make_components(), stop_after_epoch=1, log=quiet)
    with pytest.raises(ValueError, match="config differs"):
        fit(make_cfg(epochs=2, seed=5), run, components=make_components(), resume=True, log=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        fit(make_cfg(epochs=2), run, components=make_components(), log=quiet)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(
            make_cfg(epochs=2),
            tmp_path / "none",
            components=make_components(),
            resume=True,
            log=quiet,
        )


def test_same_seed_same_result_and_seed_matters(tmp_path):
    fit(make_cfg(epochs=2), tmp_path / "a", components=make_components(), log=quiet)
    fit(make_cfg(epochs=2), tmp_path / "b", components=make_components(), log=quiet)
    fit(make_cfg(epochs=2, seed=1), tmp_path / "c", components=make_components(), log=quiet)
    a, b, c = state(tmp_path / "a"), state(tmp_path / "b"), state(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # dropout masks come from the training seed


# ------------------------------------------------------------------------------------- checkpoints
def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"format": 1, "w": torch.arange(3)}, path)
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled: the write fails midway
        atomic_save({"format": 1, "w": torch.zeros(3), "bad": lambda: 0}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_full_disk_while_saving_is_a_run_folder_error_that_keeps_the_old_checkpoint(
    tmp_path, monkeypatch
):
    # torch's archive writer reports a full disk as a RuntimeError, not an OSError
    path = tmp_path / "checkpoint.pt"
    atomic_save({"format": 1, "w": torch.arange(3)}, path)

    def full(obj, fh):
        fh.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 28672 vs 28568"
        )

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(engine.RunFolderError) as err:
        atomic_save({"format": 1, "w": torch.zeros(3)}, path)
    msg = str(err.value)
    assert (
        msg.startswith(f"cannot write checkpoint {str(path)!r}: [enforce fail") and "\n" not in msg
    )
    assert "bytes free on that file system" in msg and "previous checkpoint.pt is unchanged" in msg
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


CALLED: list[str] = []


def _record_call() -> dict:
    CALLED.append("unpickled")
    return {}


class _RunsCodeWhenLoaded:
    def __reduce__(self):
        return (_record_call, ())


def test_load_checkpoint_runs_no_code_of_the_file(tmp_path):
    """A checkpoint holding a Python object is refused by the safe loader: the object's code never runs."""
    torch.save({"format": 1, "model": _RunsCodeWhenLoaded()}, tmp_path / "evil.pt")
    CALLED.clear()
    with pytest.raises(ValueError, match="objects other than tensors and plain data"):
        load_checkpoint(tmp_path / "evil.pt")
    assert CALLED == []


# ------------------------------------------------------------------------------------- NaN stop
class NaNAfter(nn.Module):
    """CE that turns NaN from the ``bad``-th training call on."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.reduction, self.calls, self.bad = "mean", 0, bad

    def forward(self, logits, target):
        self.calls += 1
        out = F.cross_entropy(logits, target, reduction=self.reduction)
        return out * float("nan") if self.calls > self.bad else out


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    cfg = make_cfg(epochs=4)
    run = tmp_path / "nan"
    steps_per_epoch = math.ceil(N_TRAIN / 16)
    comps = make_components(loss=NaNAfter(bad=2 * steps_per_epoch + 1))  # NaN in epoch index 2
    with pytest.raises(
        TrainingDiverged, match=r"non-finite.*in epoch 3 of 4.*last good checkpoint"
    ):
        fit(cfg, run, components=comps, log=quiet)
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    info = json.loads((run / "diverged.json").read_text())
    assert info["epoch"] == 2 and info["step"] == 2 * steps_per_epoch + 1
    # what `lpl-train report` places the run's row by, without final.json
    seed = cfg["train"]["seed"]
    assert (info["seed"], info["world_size"], info["multi_label"]) == (seed, 1, False)
    assert len(engine.read_metrics(run)) == 2


# ------------------------------------------------------------------------------------- metrics
def test_metrics_jsonl_values_match_an_independent_evaluation(tmp_path):
    cfg = make_cfg(epochs=3)
    comps = make_components()
    fit(cfg, tmp_path, components=comps, log=quiet)
    recs = engine.read_metrics(tmp_path)
    assert [r["epoch"] for r in recs] == [0, 1, 2]
    # lr of the last iteration of each epoch: warm-up 1 epoch then cosine over the remaining iterations
    n_it = math.ceil(N_TRAIN / 16)
    for r in recs:
        assert r["lr"] == pytest.approx(
            0.1 * lr_factor(r["epoch"], n_it - 1, n_it, cfg["schedule"])
        )
    # independent top-1 error / per-class accuracy of the final weights
    model = TinyNet()
    model.load_state_dict(state(tmp_path))
    model.eval()
    (_, _), (xte, yte) = make_data()
    with torch.no_grad():
        logits = model(xte)
    pred = logits.argmax(1)
    err = 100 * (pred != yte).double().mean().item()
    last = recs[-1]
    assert last["test_top1_error"] == pytest.approx(err, abs=1e-9)
    per = [100 * (pred[yte == c] == c).double().mean().item() for c in range(C)]
    assert last["test_per_class_acc"] == pytest.approx(per, abs=1e-9)
    assert last["test_loss"] == pytest.approx(F.cross_entropy(logits, yte).item(), rel=1e-5)
    best = min(r["test_top1_error"] for r in recs)
    assert last["best"]["test_top1_error"] == best
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["final"]["top1_error"] == last["test_top1_error"]
    assert final["class_counts"] == comps.class_counts
    assert (tmp_path / "config.toml").read_text().startswith('name = "tiny"')


class _RecordingCE(nn.CrossEntropyLoss):
    """Cross-entropy that records, in training mode, each batch's loss and its count of correct argmaxes:
    the training record's values computed outside the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[float, int, int]] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().forward(logits, target)
        if self.training:
            correct = int((logits.detach().argmax(1) == target).sum())
            self.batches.append((loss.item(), correct, len(target)))
        return loss


def test_training_loss_and_error_match_the_batches_as_they_were_trained(tmp_path):
    # 96 samples in batches of 20: a last batch of 16, which weighs as much as the others (docs)
    cfg = make_cfg(epochs=3)
    comps = make_components(batch_size=20)
    comps.loss = _RecordingCE()
    fit(cfg, tmp_path, components=comps, log=quiet)
    recs = engine.read_metrics(tmp_path)
    n_it = math.ceil(N_TRAIN / 20)
    assert len(comps.loss.batches) == 3 * n_it
    for r in recs:
        epoch = comps.loss.batches[r["epoch"] * n_it : (r["epoch"] + 1) * n_it]
        losses, correct, seen = zip(*epoch, strict=True)
        assert sum(seen) == N_TRAIN
        assert r["train_loss"] == pytest.approx(sum(losses) / n_it, rel=1e-6)
        assert r["train_top1_error"] == pytest.approx(100 * (1 - sum(correct) / N_TRAIN), abs=1e-9)
    assert recs[0]["train_loss"] != pytest.approx(recs[-1]["train_loss"], rel=1e-3)  # it trained


def test_a_model_of_one_s_own_needs_no_classifier_for_the_loss_variation(tmp_path):
    # only a feature-level loss reads model.classifier; a bare nn.Linear trains and is measured
    cfg = make_cfg(epochs=2, loss_variation=True)
    comps = make_components()
    torch.manual_seed(0)
    comps.model = nn.Linear(D, C)
    fit(cfg, tmp_path, components=comps, log=quiet)
    lv = engine.read_metrics(tmp_path)[-1]["loss_variation"]
    assert sum(lv["count"]) > 0 and lv["relative_variation"] == pytest.approx([0.0] * C, abs=1e-6)


def test_validation_metrics_come_from_the_validation_loader(tmp_path):
    """``val_*`` is measured on the validation loader, not the test set: here 20 test inputs relabelled
    (y + 1) mod C, so that its error differs from the test error and is computed here independently."""
    comps = make_components()
    (_, _), (xte, yte) = make_data()
    xv, yv = xte[:20], (yte[:20] + 1) % C
    comps.val_loader = TinyLoader(xv, yv, 32, False)
    fit(make_cfg(epochs=2), tmp_path, components=comps, log=quiet)
    rec = engine.read_metrics(tmp_path)[-1]
    model = TinyNet()
    model.load_state_dict(state(tmp_path))
    model.eval()
    with torch.no_grad():
        err = 100 * (model(xv).argmax(1) != yv).double().mean().item()
    assert rec["val_top1_error"] == pytest.approx(err, abs=1e-9)
    assert rec["val_top1_error"] != rec["test_top1_error"]


def test_a_checkpoint_lacking_training_state_is_refused_by_name(tmp_path):
    run = tmp_path / "r"
    fit(make_cfg(epochs=2), run, components=make_components(), stop_after_epoch=1, log=quiet)
    ck = load_checkpoint(run / "checkpoint.pt")
    del ck["optimizer"]
    atomic_save(ck, run / "checkpoint.pt")
    with pytest.raises(engine.CorruptCheckpoint, match="lacks optimizer: it is not a training"):
        fit(make_cfg(epochs=2), run, components=make_components(), resume=True, log=quiet)


def test_multilabel_map_matches_sklearn(tmp_path):
    sk = pytest.importorskip("sklearn.metrics")
    cfg = make_cfg(epochs=2)
    fit(cfg, tmp_path, components=make_components(multi_label=True), log=quiet)
    rec = engine.read_metrics(tmp_path)[-1]
    model = TinyNet()
    model.load_state_dict(state(tmp_path))
    model.eval()
    (_, _), (xte, yte) = make_data(multi_label=True)
    with torch.no_grad():
        scores = model(xte)
    ap = [
        100 * sk.average_precision_score(yte[:, c].numpy(), scores[:, c].numpy()) for c in range(C)
    ]
    assert rec["test_ap_per_class"] == pytest.approx(ap, abs=1e-6)
    assert rec["test_map"] == pytest.approx(sum(ap) / C, abs=1e-6)
    assert rec["test_loss"] == pytest.approx(
        F.binary_cross_entropy_with_logits(scores, yte).item(), rel=1e-5
    )


def test_multilabel_records_have_no_training_top1_error(tmp_path):
    """Top-1 error is a single-label metric: a multi-label run's records carry the training loss, not a
    ``train_top1_error`` (which would read 100%: no multi-hot row is a class index)."""
    fit(make_cfg(epochs=1), tmp_path, components=make_components(multi_label=True), log=quiet)
    rec = engine.read_metrics(tmp_path)[0]
    assert "train_loss" in rec and "train_top1_error" not in rec


def test_multilabel_best_is_the_epoch_of_the_highest_map(tmp_path):
    """For multi-label runs higher is better: ``best`` holds the highest test mAP and its (first) epoch."""
    fit(make_cfg(epochs=3), tmp_path, components=make_components(multi_label=True), log=quiet)
    maps = [r["test_map"] for r in engine.read_metrics(tmp_path)]
    assert len(set(maps)) > 1  # otherwise any rule would pick the same epoch
    expected = {"test_map": max(maps), "epoch": maps.index(max(maps))}
    assert json.loads((tmp_path / "final.json").read_text())["best"] == expected


def test_eval_every_evaluates_every_kth_epoch_and_the_last(tmp_path):
    """``train.eval_every = 2`` over 5 epochs: evaluated after the 2nd, 4th and 5th (last) epochs, that is
    epochs 1, 3, 4 counted from 0; the other records carry no test metrics."""
    fit(make_cfg(epochs=5, eval_every=2), tmp_path, components=make_components(), log=quiet)
    recs = engine.read_metrics(tmp_path)
    assert [r["epoch"] for r in recs if "test_top1_error" in r] == [1, 3, 4]
    assert recs[0]["best"] == {} and recs[1]["best"]["epoch"] == 1


# ------------------------------------------------------------------------------------- options
class FeatureLoss(nn.Module):
    """needs_features stand-in: records what the engine passes."""

    needs_features = True

    def __init__(self) -> None:
        super().__init__()
        self.reduction, self.seen = "mean", []

    def forward(self, features, target, classifier):
        self.seen.append((tuple(features.shape), classifier))
        return F.cross_entropy(classifier(features), target)


def test_feature_level_loss_gets_features_and_classifier(tmp_path):
    loss = FeatureLoss()
    comps = make_components(loss=loss)
    fit(make_cfg(epochs=1), tmp_path, components=comps, log=quiet)
    assert loss.seen and all(shape[1] == 16 for shape, _ in loss.seen)
    assert all(clf is comps.model.classifier for _, clf in loss.seen)


class EpochLoss(nn.CrossEntropyLoss):
    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        self.calls.append((epoch, total_epochs))


def test_epoch_hook_called_every_epoch_including_after_resume(tmp_path):
    loss = EpochLoss()
    fit(
        make_cfg(epochs=3),
        tmp_path,
        components=make_components(loss=loss),
        stop_after_epoch=1,
        log=quiet,
    )
    assert loss.calls == [(0, 3)]
    loss2 = EpochLoss()
    fit(
        make_cfg(epochs=3), tmp_path, components=make_components(loss=loss2), resume=True, log=quiet
    )
    assert loss2.calls == [(1, 3), (2, 3)]


def test_bf16_autocast_on_cpu_and_l2_all(tmp_path):
    cfg = make_cfg(epochs=1, amp="bf16")
    fit(cfg, tmp_path / "bf16", components=make_components(), log=quiet)
    assert math.isfinite(engine.read_metrics(tmp_path / "bf16")[0]["train_loss"])
    # l2_all adds l2·Σθ² to the loss: the logged training loss grows by at least l2·Σθ² of the final net
    base = make_cfg(epochs=1)
    fit(base, tmp_path / "a", components=make_components(), log=quiet)
    pen = dict(base, optim=dict(base["optim"], l2_all=0.5))
    fit(pen, tmp_path / "b", components=make_components(), log=quiet)
    la, lb = (engine.read_metrics(tmp_path / d)[0]["train_loss"] for d in "ab")
    theta = sum((v.float() ** 2).sum().item() for k, v in state(tmp_path / "b").items())
    assert lb > la + 0.5 * theta * 0.5


class DtypeSpy(nn.CrossEntropyLoss):
    """Cross-entropy that notes the dtype of every input it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.dtypes.add(input.dtype)
        return super().forward(input, target)


def test_the_loss_takes_float32_logits_under_bf16_autocast(tmp_path):
    """Under bf16 autocast the network's logits come out in bf16; the loss is computed on them in
    float32 (LPL's perturbation, the logged training loss), never in bf16's 8-bit mantissa."""
    spy = DtypeSpy()
    cfg = make_cfg(epochs=1, amp="bf16")
    fit(cfg, tmp_path / "r", components=make_components(loss=spy), log=quiet)
    assert spy.dtypes == {torch.float32}


def test_a_float64_run_trains_as_a_plain_float64_loop_bit_for_bit(tmp_path):
    """Float64 in, float64 throughout: a float64 network on float64 batches trains (logits and loss,
    l2_all, clipping, the optimiser) and is measured (train_loss, test_loss) as a hand-written float64
    loop with the same seed and batches, to the last bit; no value passes through float32."""
    cfg = make_cfg(epochs=2)
    cfg["optim"].update(l2_all=1e-3, grad_clip=0.5)

    def components():
        comps = make_components()
        comps.model.double()
        for ld in (comps.train_loader, comps.test_loader):
            ld.x = ld.x.double()
        return comps

    spy = DtypeSpy()
    comps = components()
    comps.loss = spy
    fit(cfg, tmp_path, components=comps, log=quiet)
    assert spy.dtypes == {torch.float64}
    ref = components()
    model, loader, o = ref.model, ref.train_loader, cfg["optim"]
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                          weight_decay=o["weight_decay"])  # fmt: skip
    torch.manual_seed(cfg["train"]["seed"])  # dropout's draws, as fit seeds them
    means = []
    for epoch in range(cfg["schedule"]["epochs"]):
        loader.set_epoch(epoch)
        total = 0.0
        for it, (x, y) in enumerate(loader):
            opt.param_groups[0]["lr"] = o["lr"] * lr_factor(epoch, it, len(loader), cfg["schedule"])
            value = F.cross_entropy(model(x), y)
            value = value + o["l2_all"] * sum((p**2).sum() for p in model.parameters())
            opt.zero_grad()
            value.backward()
            nn.utils.clip_grad_norm_(list(model.parameters()), o["grad_clip"])
            opt.step()
            total += value.item()
        means.append(total / len(loader))
    trained = state(tmp_path)
    for k, v in model.state_dict().items():
        assert trained[k].dtype == torch.float64 and torch.equal(trained[k], v), k
    recs = engine.read_metrics(tmp_path)
    assert [r["train_loss"] for r in recs] == means
    model.eval()
    with torch.no_grad():
        test_loss = F.cross_entropy(model(comps.test_loader.x), comps.test_loader.y).item()
    assert recs[-1]["test_loss"] == pytest.approx(test_loss, rel=1e-14)  # batch sums: rounding


@pytest.mark.parametrize(
    "name, cls",
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_the_optimiser_is_the_one_the_config_names_with_its_settings(name, cls):
    """``optim.name`` picks the torch optimiser; lr and weight decay reach every one of them, momentum
    and Nesterov reach SGD (the LA/LPL recipes train with Nesterov)."""
    from lpl_train.engine.step import _optimizer

    cfg = make_cfg()["optim"]
    cfg.update(name=name, lr=0.05, momentum=0.8, nesterov=True, weight_decay=3e-4)
    opt = _optimizer([nn.Parameter(torch.zeros(3))], cfg)
    group = opt.param_groups[0]
    assert type(opt) is cls
    assert group["lr"] == 0.05 and group["weight_decay"] == 3e-4
    if name == "sgd":
        assert group["momentum"] == 0.8 and group["nesterov"] is True


# ------------------------------------------------------------------------------------- DDP (gloo)
def test_dist_info_reads_the_global_and_the_node_rank_from_torchrun(monkeypatch):
    """On the second node of ``torchrun --nnodes 2 --nproc_per_node 4`` process 6 of 8 is rank 2 on its
    node: its device index is the local rank, not the global one; without torchrun, one process."""
    from lpl_train.engine import DistInfo

    for k, v in {"WORLD_SIZE": "8", "RANK": "6", "LOCAL_RANK": "2"}.items():
        monkeypatch.setenv(k, v)
    assert DistInfo.from_env() == DistInfo(rank=6, local_rank=2, world=8)
    assert not DistInfo.from_env().main
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k)
    assert DistInfo.from_env() == DistInfo(rank=0, local_rank=0, world=1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "abc"}, "environment variable WORLD_SIZE='abc' must be an int >= 1"),
        ({"WORLD_SIZE": "0"}, "environment variable WORLD_SIZE='0' must be an int >= 1"),
        (
            {"WORLD_SIZE": "2"},
            "WORLD_SIZE=2 but RANK is not set: start the processes with torchrun",
        ),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x' must be an int >= 0 and < WORLD_SIZE=2"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK='2' must be an int >= 0 and < WORLD_SIZE=2"),
        (
            {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-1"},
            "LOCAL_RANK='-1' must be an int >= 0",
        ),
        (
            {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "2"},
            "LOCAL_RANK='2' must be an int >= 0 and < WORLD_SIZE=2",
        ),
    ],
)
def test_dist_info_names_a_bad_torchrun_variable(monkeypatch, env, message):
    """A value that is not an int read as "invalid literal for int()", a missing RANK as the one word
    "RANK", and a rank at or past the world size waited for its process group forever."""
    from lpl_train.engine import DistInfo

    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=re.escape(message)):
        DistInfo.from_env()


DDP_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_engine import make_components, make_cfg, quiet, C, NaNAfter, exit_without_teardown
    from lpl_train.engine import DistInfo, TrainingDiverged, _ShardLoader, fit
    torch.set_num_threads(1)
    out, world, nan = sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3
    dist = DistInfo.from_env()
    if world > 1:  # our own process group, left without the gloo teardown (exit_without_teardown)
        torch.distributed.init_process_group("gloo")
    loss = NaNAfter(bad=3) if nan and dist.rank == 1 else None
    comps = make_components(batch_size=16, dropout=0.0, loss=loss)  # the global batch
    if world > 1:
        comps.train_loader = _ShardLoader(comps.train_loader, dist)
    cfg = make_cfg(epochs=2)
    cfg["optim"]["weight_decay"] = 0.0
    cfg["model"]["params"] = {{}}
    try:
        fit(cfg, out, components=comps, log=quiet)
    except TrainingDiverged as exc:
        open(f"{{out}}/diverged_rank{{dist.rank}}.txt", "w").write(str(exc))
        if world > 1:
            exit_without_teardown()
        sys.exit(0)
    if world > 1:
        sd = comps.model.state_dict()
        torch.save(sd, f"{{out}}/rank{{dist.rank}}.pt")
        exit_without_teardown()
    """
)


def _script(script_text: str, path: Path) -> tuple[Path, dict[str, str]]:
    """``script_text`` (its ``{tests}`` filled in) written to ``path``, and the environment to run it in."""
    path.write_text(script_text.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return path, env


def _torchrun(script: Path, env: dict[str, str], *args: object) -> None:
    """Run ``script`` with ``args`` under torchrun, 2 gloo processes; it must succeed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), *map(str, args)]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]


def _one_then_two_processes(script_text: str, tmp_path: Path) -> None:
    """Run ``script_text`` in one process into tmp_path/one, then under torchrun with 2 gloo processes
    into tmp_path/two; each must succeed."""
    script, env = _script(script_text, tmp_path / "ddp_run.py")
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "1"], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    _torchrun(script, env, tmp_path / "two", 2)


def test_ddp_two_processes_gloo_matches_single_process(tmp_path):
    _one_then_two_processes(DDP_SCRIPT, tmp_path)
    r0 = torch.load(tmp_path / "two" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "two" / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # replicas stay identical
    one = state(tmp_path / "one")
    two = state(tmp_path / "two")
    for k in one:
        # the same global batches, averaged over 2 ranks of 8 instead of 1 of 16: equal up to rounding
        assert torch.allclose(one[k], two[k], atol=1e-5), k
        assert not torch.equal(one[k], make_components(dropout=0.0).model.state_dict()[k])
    recs = engine.read_metrics(tmp_path / "two")
    assert [r["epoch"] for r in recs] == [0, 1] and "test_top1_error" in recs[-1]
    # the training error counts the global batch (both ranks' hits), as the single process does
    for r1, r2 in zip(engine.read_metrics(tmp_path / "one"), recs, strict=True):
        assert abs(r1["train_top1_error"] - r2["train_top1_error"]) <= 100 / N_TRAIN + 1e-9


# ------------------------------------------------------------------------- real losses in the loop
def test_isda_resumes_bit_exact_and_its_loss_variation_is_zero_then_positive(tmp_path):
    from lpl_train.losses import build_loss

    def comps():
        return make_components(loss=build_loss("isda", num_classes=C, lambda0=0.5))

    cfg = make_cfg(epochs=3, loss_variation=True)
    fit(cfg, tmp_path / "full", components=comps(), log=quiet)
    fit(cfg, tmp_path / "part", components=comps(), stop_after_epoch=1, log=quiet)
    fit(cfg, tmp_path / "part", components=comps(), resume=True, log=quiet)
    ck_a, ck_b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("full", "part"))
    for k in ck_a["model"]:
        assert torch.equal(ck_a["model"][k], ck_b["model"][k]), k
    assert torch.equal(ck_a["loss"]["covariance"], ck_b["loss"]["covariance"])  # lazily sized state
    assert ck_a["loss"]["covariance"].shape == (C, 16, 16)
    recs = engine.read_metrics(tmp_path / "full")
    # λ = λ0·epoch/E: no augmentation in epoch 0, then CE of the augmented logits exceeds CE (Eq. 7)
    assert recs[0]["loss_variation"]["relative_variation"] == [0.0] * C
    assert all(v > 0 for r in recs[1:] for v in r["loss_variation"]["relative_variation"])


def test_isda_loss_variation_of_a_float64_run_stays_float64():
    """The measurement took ISDA's augmented logits through float32 (.float()): a float64 run's l'
    was rounded to float32. It is CE of the float64 augmented logits, as LossVariation computes it."""
    from lpl_train.engine.step import _LossVariation
    from lpl_train.loss_variation import LossVariation
    from lpl_train.losses import build_loss

    g = torch.Generator().manual_seed(5)
    feats = torch.randn(24, 16, generator=g, dtype=torch.float64)
    y = torch.arange(24) % C
    head = nn.Linear(16, C).double()
    loss = build_loss("isda", num_classes=C, lambda0=0.5).double()
    loss.set_epoch(3, 4)  # lambda > 0: the augmentation is on
    loss(feats, y, head)  # statistics from one batch
    logits = head(feats).detach()
    measured = _LossVariation(loss, C, multi_label=False)
    measured.update(logits, y, feats, head)
    direct = LossVariation(C)
    direct.update(logits, y, perturbed_logits=loss.augmented_logits(feats, y, head))
    got, want = measured.acc.compute(), direct.compute()
    assert got["perturbed_loss"] == want["perturbed_loss"] and got["loss"] == want["loss"]
    assert all(v > 0 for v in got["relative_variation"])


def test_lpl_index_split_minimises_head_and_maximises_tail_loss(tmp_path):
    from lpl_train.losses import build_loss

    counts = [40, 30, 20, 10]  # class order for the index split: classes 0, 1 are the head
    loss = build_loss(
        "lpl", num_classes=C, class_counts=counts, split="index", tau=2, epsilon=0.5, alpha=0.1
    )
    fit(
        make_cfg(epochs=1, loss_variation=True),
        tmp_path,
        components=make_components(loss=loss),
        log=quiet,
    )
    rel = engine.read_metrics(tmp_path)[0]["loss_variation"]["relative_variation"]
    assert rel[0] < 0 and rel[1] < 0 and rel[2] > 0 and rel[3] > 0


def test_multilabel_lpl_variation_has_positive_and_negative_terms(tmp_path):
    from lpl_train.losses import build_loss

    loss = build_loss("ml_lpl", num_classes=C, class_counts=[40, 30, 20, 10], tau=2, epsilon=0.5)
    fit(make_cfg(epochs=1, loss_variation=True), tmp_path,
        components=make_components(multi_label=True, loss=loss), log=quiet)  # fmt: skip
    lv = engine.read_metrics(tmp_path)[0]["loss_variation"]
    pos, neg = lv["pos"]["relative_variation"], lv["neg"]["relative_variation"]
    # Eqs. 37-38: head classes (0, 1) have their positive loss minimised and negative loss maximised
    assert pos[0] < 0 < neg[0] and pos[1] < 0 < neg[1]
    assert pos[2] > 0 > neg[2] and pos[3] > 0 > neg[3]


def test_class_aware_resampling_loader():
    from lpl_train.data import TensorData, make_loader
    from lpl_train.samplers import ClassAwareSampler

    y = torch.tensor([0] * 30 + [1] * 6 + [2] * 3)
    x = torch.arange(len(y), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    split = TensorData(x, y, (0.0,), (1.0,))
    sampler = ClassAwareSampler(y, seed=0, num_samples=60)
    kw = {
        "batch_size": 8,
        "train": True,
        "augment": "none",
        "drop_last": False,
        "device": "cpu",
        "seed": 0,
    }
    loader = engine._ResampledLoader(split, sampler, make_loader, kw)
    assert len(loader) == 8
    loader.set_epoch(3)
    seen = torch.cat([t for _, t in loader])
    assert sorted(seen.tolist()) == sorted(y[sampler.indices(3)].tolist())
    counts = torch.bincount(seen, minlength=3)
    assert counts.max() - counts.min() <= 3  # classes visited in turn, 3 images per visit
    again = torch.cat([t for _, t in loader])
    assert torch.equal(seen, again)  # epoch 3 is the same every time


def test_ddp_nan_on_one_rank_stops_every_rank(tmp_path):
    _torchrun(*_script(DDP_SCRIPT, tmp_path / "ddp_run.py"), tmp_path / "nan", 2, "nan")
    for rank in (0, 1):  # rank 1 produced the NaN in epoch 1; rank 0 learns it at the epoch's end
        text = (tmp_path / "nan" / f"diverged_rank{rank}.txt").read_text()
        # the first bad step, rank 1's 4th (0-indexed 3), not the next one that its NaN spoiled everywhere
        assert "in epoch 1 of 2" in text and "(global step 3)" in text, text
    assert not (tmp_path / "nan" / "checkpoint.pt").exists()  # no epoch completed


def test_real_stack_kill_and_resume_is_bit_exact(tmp_path):
    """The package's own pieces (uint8 TensorData, crop+flip TensorLoader, BN CNN with dropout, LDAM with
    DRW and the cosine head): a run killed inside epoch 2 and resumed ends bit-for-bit where an
    uninterrupted run ends, checkpoint and metrics alike."""
    from lpl_train.data import TensorData, make_loader
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    g = torch.Generator().manual_seed(7)
    counts = [24, 12, 6, 6]
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = torch.randint(0, 256, (len(y), 1, 28, 28), generator=g, dtype=torch.uint8)
    train = TensorData(x, y, (0.5,), (0.25,))
    test = TensorData(x[::3].clone(), y[::3].clone(), (0.5,), (0.25,))

    class Killer:
        def __init__(self, loader, at=None):
            self.loader, self.at, self.epoch = loader, at, 0

        def set_epoch(self, epoch):
            self.epoch = epoch
            self.loader.set_epoch(epoch)

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for i, batch in enumerate(self.loader):
                if self.at == (self.epoch, i):
                    raise KeyboardInterrupt("simulated kill")
                yield batch

    def comps(kill_at=None, init=0):
        torch.manual_seed(init)
        model = build_model("fmnist_cnn", 4, width=4, dropout=0.3, use_norm=True)
        loss = build_loss("ldam", num_classes=4, class_counts=counts, drw_epoch=2)
        tl = make_loader(train, 16, train=True, augment="crop_flip", seed=3)
        return Components(
            model=model,
            loss=loss,
            train_loader=Killer(tl, kill_at),
            test_loader=make_loader(test, 32, train=False),
            num_classes=4,
            class_counts=counts,
        )

    cfg = make_cfg(epochs=4, loss_variation=True)
    fit(cfg, tmp_path / "full", components=comps(), log=quiet)
    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, run, components=comps(kill_at=(2, 1)), log=quiet)
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
    fit(cfg, run, components=comps(init=5), resume=True, log=quiet)
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    resumed = load_checkpoint(run / "checkpoint.pt")
    for part in ("model", "loss"):
        for k, v in full[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)
    assert not torch.equal(full["loss"]["weight"], torch.ones(4))  # DRW was on in epochs 2, 3
    assert strip_timing(engine.read_metrics(run)) == strip_timing(
        engine.read_metrics(tmp_path / "full")
    )


def test_ldam_loss_variation_is_measured_on_its_scaled_logits():
    """The engine's per-step measurement compares LDAM with CE on LDAM's own scale: l = CE(s·u) and
    l' = CE(s·(u − m_y e_y)) with m_c = 0.5·(n_min/n_c)^(1/4) (Eq. 9), so every class's variation is
    positive. Against the CE of the raw cosines it would be close to −100% on confident logits."""
    import torch.nn.functional as F

    from lpl_train.losses import build_loss

    counts = [16, 8, 1]
    loss = build_loss("ldam", num_classes=3, class_counts=counts)
    lv = engine._LossVariation(loss, 3, multi_label=False)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    u = torch.zeros(6, 3)
    u[torch.arange(6), y] = 0.2  # confident once scaled by s = 30
    lv.update(u, y, None, None)
    got = lv.result()["relative_variation"]
    m = torch.tensor([0.5 * (1 / n) ** 0.25 for n in counts])
    z = 30.0 * u
    zm = 30.0 * (u - F.one_hot(y, 3) * m[y, None])
    l, lp = F.cross_entropy(z, y, reduction="none"), F.cross_entropy(zm, y, reduction="none")
    for c in range(3):
        expected = float(((lp - l)[y == c]).sum() / l[y == c].sum())
        assert got[c] == pytest.approx(expected, rel=1e-5)
        assert got[c] > 0


def test_resuming_a_finished_run_gives_the_components_its_last_weights(tmp_path):
    """``fit(resume=True)`` of a finished run trains nothing; pre-built components get the run's last
    weights (a caller evaluates them next), and without its checkpoint that is refused, not skipped."""
    cfg = make_cfg(epochs=2)
    fit(cfg, tmp_path, components=make_components(), log=print)
    fresh = make_components(init_seed=5)
    assert fit(cfg, tmp_path, components=fresh, resume=True, log=print) == json.loads(
        (tmp_path / "final.json").read_text()
    )
    trained = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert all(torch.equal(v, fresh.model.state_dict()[k]) for k, v in trained.items())
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="finished but its checkpoint is gone"):
        fit(cfg, tmp_path, components=make_components(), resume=True, log=print)


class StepCountingCE(nn.CrossEntropyLoss):
    """Cross-entropy with a state: a buffer counting the training steps that called it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(input, target)


def test_resuming_a_finished_run_gives_the_components_its_loss_state(tmp_path):
    """The loss's state comes back with the weights (LDAM's DRW weights, a learnt LC, ISDA's statistics):
    2 epochs of ceil(96 / 16) = 6 steps called the loss 12 times."""
    cfg = make_cfg(epochs=2)
    fit(cfg, tmp_path, components=make_components(loss=StepCountingCE()), log=quiet)
    fresh = make_components(loss=StepCountingCE())
    fit(cfg, tmp_path, components=fresh, resume=True, log=quiet)
    assert int(fresh.loss.calls) == 2 * 6


def test_a_resume_on_another_number_of_processes_is_refused(tmp_path):
    """The checkpoint names the world size it was written with: a 2-process run resumed on one process
    (or the reverse) would mix per-process statistics into one record that names a single world size."""
    cfg = make_cfg(epochs=3)
    fit(cfg, tmp_path, components=make_components(), stop_after_epoch=1, log=quiet)
    path = tmp_path / "checkpoint.pt"
    ck = load_checkpoint(path)
    assert ck["world_size"] == 1
    ck["world_size"] = 2  # as a torchrun --nproc_per_node 2 run writes it
    torch.save(ck, path)
    with pytest.raises(ValueError, match=r"written by a run on 2 process\(es\), this one has 1"):
        fit(cfg, tmp_path, components=make_components(), resume=True, log=quiet)
    # and the reverse: a checkpoint of one process is refused by a run on two (checked before any
    # state is loaded, so a bare trainer with world 2 can be asked directly, without a process group)
    trainer = engine.trainer._Trainer.__new__(engine.trainer._Trainer)
    trainer.dist = engine.DistInfo(rank=0, world=2)
    ck["world_size"] = 1
    with pytest.raises(ValueError, match=r"written by a run on 1 process\(es\), this one has 2"):
        trainer.restore(ck)


def test_ddp_ranks_train_slices_of_the_single_process_runs_global_batches():
    """Each rank takes its tensor_split slice of every global batch, so the ranks together train exactly
    the batches (and crops) of one process: nothing is left out of an epoch (whole local batches beyond a
    multiple of W were), and a last batch that splits unevenly gets shares n_r·W/m that make the
    averaged gradient the global mean's; a last batch smaller than W is trained whole by every rank."""
    from lpl_train.data import TensorData, make_loader
    from lpl_train.engine import DistInfo, _ShardLoader

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 1, 8, 8), generator=g, dtype=torch.uint8)
    for n in (37, 33):  # last batches of 5 (split 3 + 2) and of 1 (fewer than the 2 ranks)
        part = TensorData(images[:n], torch.arange(n) % 3, (0.5,), (0.25,))
        one = list(make_loader(part, 16, True, "crop_flip", "cpu", seed=3))
        ranks = []
        for r in range(2):
            loader = _ShardLoader(make_loader(part, 16, True, "crop_flip", "cpu", seed=3),
                                  DistInfo(rank=r, world=2))  # fmt: skip
            assert len(loader) == len(one) == 3
            got = []
            for x, y in loader:
                got.append((x, y, loader.share))
            ranks.append(got)
        for b, (x1, y1) in enumerate(one):
            if x1.shape[0] < 2:  # every rank trains the one sample, share 1
                assert all(torch.equal(rk[b][0], x1) and rk[b][2] == 1.0 for rk in ranks)
                continue
            assert torch.equal(torch.cat([rk[b][0] for rk in ranks]), x1)  # same crops, same order
            assert torch.equal(torch.cat([rk[b][1] for rk in ranks]), y1)
        assert all(rk[b][2] == 1.0 for rk in ranks for b in (0, 1))  # full batches split evenly
        if n == 37:
            assert [rk[2][2] for rk in ranks] == pytest.approx([3 * 2 / 5, 2 * 2 / 5])


def exit_without_teardown() -> None:
    """End a torchrun test script's rank after a barrier, without destroying its gloo process group: that
    teardown at times aborts ("terminate called without an active exception", torch 2.13) or hangs (torch
    2.3) as the ranks exit, which is not what these scripts test. The script initialised the group itself,
    so ``fit`` left it alone."""
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


#: torch 2.3's gloo process group can hang in ``destroy_process_group`` as the ranks exit (py-spy showed
#: both ranks of a finished run waiting there, with the whole split evaluated by rank 0 as well as in
#: parts); seen repeatedly under pytest with these extra torchrun launches, not from torch 2.4 on
OLD_GLOO_TEARDOWN = pytest.mark.skipif(
    tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 4),
    reason="torch 2.3's gloo can hang in destroy_process_group at exit",
)


_EVAL_DDP_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    sys.path.insert(0, {tests!r})
    from test_engine import make_components, make_cfg, quiet, TinyLoader, C, D, exit_without_teardown
    from lpl_train.engine import DistInfo, _ShardLoader, fit
    torch.set_num_threads(1)
    out, mode, ml = sys.argv[1], sys.argv[2], sys.argv[3] == "ml"
    dist = DistInfo.from_env()

    class BNNet(nn.Module):  # BatchNorm: each rank's last forward leaves its own running statistics
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU())
            self.classifier = nn.Linear(16, C)
        def forward_features(self, x):
            return self.body(x)
        def forward(self, x):
            return self.classifier(self.body(x))

    torch.distributed.init_process_group("gloo")  # our own: fit leaves it, and the script exits below
    comps = make_components(multi_label=ml, dropout=0.0)
    torch.manual_seed(0)
    comps.model = BNNet()
    comps.train_loader = _ShardLoader(comps.train_loader, dist)
    if mode == "parts":  # rank r evaluates the r-th half of the test set
        t = comps.test_loader
        part = torch.tensor_split(torch.arange(len(t.x)), dist.world)[dist.rank]
        comps.test_loader = TinyLoader(t.x[part], t.y[part], 32, False)
        comps.eval_sharded = True
    cfg = make_cfg(epochs=2)
    cfg["model"]["params"] = {{}}
    fit(cfg, out, components=comps, log=quiet)
    exit_without_teardown()
    """
)


@OLD_GLOO_TEARDOWN
@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_ddp_ranks_evaluate_their_parts_as_rank_0_evaluates_the_whole(tmp_path, multi_label):
    """With sharded evaluation loaders each of 2 ranks evaluates its half of the test set, with rank 0's
    BatchNorm statistics, and the sums (and mAP's scores) are combined: the records are those of rank 0
    evaluating the whole set (the loss to the rounding of other batch sums), and the training is
    untouched (same train losses, same weights)."""
    script, env = _script(_EVAL_DDP_SCRIPT, tmp_path / "ddp_eval.py")
    for mode in ("whole", "parts"):
        _torchrun(script, env, tmp_path / mode, mode, "ml" if multi_label else "sl")
    whole, parts = (engine.read_metrics(tmp_path / m) for m in ("whole", "parts"))
    assert len(whole) == len(parts) == 2
    for a, b in zip(whole, parts, strict=True):
        assert a["train_loss"] == b["train_loss"]
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-6)
        keys = ("test_map", "test_ap_per_class") if multi_label else (
            "test_top1_error", "test_per_class_acc")  # fmt: skip
        for k in keys:
            assert b[k] == pytest.approx(a[k], abs=1e-9), k
    wa, wb = (state(tmp_path / m) for m in ("whole", "parts"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


_EVAL_EMPTY_PART_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_engine import make_data, TinyLoader, TinyNet, C, exit_without_teardown
    from lpl_train.engine import DistInfo, evaluate
    torch.set_num_threads(1)
    out = sys.argv[1]
    torch.distributed.init_process_group("gloo")
    dist = DistInfo.from_env()
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    res = {{}}
    for ml in (False, True):
        (_, _), (x, y) = make_data(ml)
        n = 3  # 3 rows over 2 ranks of batch 1: parts of 2 and 1; then 1 row: parts of 1 and 0
        for rows in (n, 1):
            part = torch.tensor_split(torch.arange(rows), dist.world)[dist.rank]
            loader = TinyLoader(x[part], y[part], 1, False)
            res[f"{{ml}}-{{rows}}"] = evaluate(model, loader, C, [1] * C, ml, distributed=True)
    json.dump(res, open(f"{{out}}/rank{{dist.rank}}.json", "w"))
    exit_without_teardown()
    """
)


@OLD_GLOO_TEARDOWN
def test_ddp_evaluation_parts_may_be_empty(tmp_path):
    """A split of fewer rows than processes leaves a rank an empty part: it still takes part in the sums
    and the gathering of the scores, and every rank gets the whole split's metrics, those one process
    computes on it."""
    from lpl_train.engine import evaluate

    _torchrun(*_script(_EVAL_EMPTY_PART_SCRIPT, tmp_path / "ddp_eval_empty.py"), tmp_path)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert got[0] == got[1]
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    for ml in (False, True):
        (_, _), (x, y) = make_data(ml)
        for rows in (3, 1):
            want = evaluate(model, TinyLoader(x[:rows], y[:rows], 1, False), C, [1] * C, ml)
            have = got[0][f"{ml}-{rows}"]
            assert have.keys() == want.keys()
            for k, v in want.items():
                vs, hs = (v, have[k]) if isinstance(v, list) else ([v], [have[k]])
                assert [h is None for h in hs] == [w is None for w in vs], (ml, rows, k)
                for h, w in zip(hs, vs, strict=True):
                    assert w is None or h == pytest.approx(w, rel=1e-6, abs=1e-9), (ml, rows, k)


_EVAL_FLOAT64_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_engine import exit_without_teardown
    from lpl_train.engine import DistInfo, evaluate
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    dist = DistInfo.from_env()
    # the scores are the inputs; the positive's beats the negative's by 1e-12 (equal in float32)
    x = torch.tensor([[1.0 + 1e-12, 0.5], [1.0, 0.25]], dtype=torch.float64)
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    part = [(x[dist.rank :: 2], y[dist.rank :: 2])]
    res = evaluate(torch.nn.Identity(), part, 2, [1, 1], True, distributed=True)
    json.dump(res, open(f"{{sys.argv[1]}}/rank{{dist.rank}}.json", "w"))
    exit_without_teardown()
    """
)


@OLD_GLOO_TEARDOWN
def test_ddp_evaluation_keeps_float64_scores_in_float64(tmp_path):
    """The ranks' mAP scores were gathered in float32: two float64 scores 1e-12 apart tied there, and the
    AP of a class whose positive ranks first fell from 100 to 50 (one process keeps them in float64)."""
    from lpl_train.engine import evaluate

    _torchrun(*_script(_EVAL_FLOAT64_SCRIPT, tmp_path / "ddp_eval_float64.py"), tmp_path)
    x = torch.tensor([[1.0 + 1e-12, 0.5], [1.0, 0.25]], dtype=torch.float64)
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    one = evaluate(nn.Identity(), [(x, y)], 2, [1, 1], True)
    assert one["ap_per_class"] == [100.0, 100.0]
    for r in (0, 1):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got["ap_per_class"] == one["ap_per_class"] and got["map"] == one["map"]


_DRAWS_DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys, torch
    sys.path.insert(0, {tests!r})
    from test_engine import make_components, make_cfg, quiet, TinyLoader, exit_without_teardown
    from lpl_train.engine import DistInfo, _ShardLoader, fit
    from lpl_train.losses import DisturbLabelLoss
    torch.set_num_threads(1)
    out = sys.argv[1]
    dist = DistInfo.from_env()
    torch.distributed.init_process_group("gloo")  # our own: fit leaves it, and the script exits below
    draws = {{}}  # (run, epoch) -> digest of the RNG state at the epoch's first training forward

    def components(run):
        comps = make_components(dropout=0.5, loss=DisturbLabelLoss(alpha=0.5, seed=1))
        comps.train_loader = _ShardLoader(comps.train_loader, dist)
        def first_forward(module, args):
            key = (run, comps.train_loader.epoch)
            if module.training and key not in draws:
                draws[key] = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()
        comps.model.register_forward_pre_hook(first_forward)
        return comps

    cfg = make_cfg(epochs=2)
    cfg["model"]["params"] = {{}}
    fit(cfg, f"{{out}}/whole", components=components("whole"), log=quiet)
    fit(cfg, f"{{out}}/part", components=components("part"), stop_after_epoch=1, log=quiet)
    fit(cfg, f"{{out}}/part", components=components("resumed"), resume=True, log=quiet)
    labels = DisturbLabelLoss(alpha=0.5, seed=1).disturb(torch.zeros(64, dtype=torch.long), 10)

    class GlobalOrder(TinyLoader):  # shuffles with torch's global generator: not (seed, epoch) alone
        def __iter__(self):
            order = torch.randperm(len(self.x))
            for i in range(len(self)):
                idx = order[i * self.bs : (i + 1) * self.bs]
                yield self.x[idx], self.y[idx]

    comps = make_components(dropout=0.5)
    t = comps.train_loader
    comps.train_loader = _ShardLoader(GlobalOrder(t.x, t.y, 16, True), dist)
    try:
        fit(cfg, f"{{out}}/global", components=comps, log=quiet)
        refused = None
    except ValueError as exc:
        refused = str(exc)
    torch.save({{"draws": draws, "labels": labels, "refused": refused}}, f"{{out}}/rank{{dist.rank}}.pt")
    exit_without_teardown()
    """
)


@OLD_GLOO_TEARDOWN
def test_ddp_ranks_draw_their_own_dropout_masks_and_labels_and_resume_exactly(tmp_path):
    """Under DDP each rank draws its own random numbers for its rows (one shared generator state gave every
    rank the same dropout masks and DisturbLabel draws): the ranks' states differ at every epoch's first
    step, a run stopped after its first epoch and resumed draws what the uninterrupted run drew and ends
    with its weights bit for bit, DisturbLabel's rank 0 draws with one process's seed and rank 1 with another, and
    a loader that shuffles with torch's global generator (so the ranks' global batches differ) is
    refused on every rank."""
    from lpl_train.losses import DisturbLabelLoss

    _torchrun(*_script(_DRAWS_DDP_SCRIPT, tmp_path / "ddp_draws.py"), tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for run, epoch in (("whole", 0), ("whole", 1), ("part", 0), ("resumed", 1)):
        assert ranks[0]["draws"][run, epoch] != ranks[1]["draws"][run, epoch], (run, epoch)
    assert ("resumed", 0) not in ranks[0]["draws"]  # the resumed run started at epoch 1
    for r in ranks:
        assert r["draws"]["resumed", 1] == r["draws"]["whole", 1]
        assert r["draws"]["part", 0] == r["draws"]["whole", 0]
    whole, part = state(tmp_path / "whole"), state(tmp_path / "part")
    assert all(torch.equal(whole[k], part[k]) for k in whole)
    assert strip_timing(engine.read_metrics(tmp_path / "whole")) == strip_timing(
        engine.read_metrics(tmp_path / "part")
    )
    one = DisturbLabelLoss(alpha=0.5, seed=1).disturb(torch.zeros(64, dtype=torch.long), 10)
    assert torch.equal(ranks[0]["labels"], one) and not torch.equal(ranks[1]["labels"], one)
    # still about alpha·(C−1)/C = 0.45 of them disturbed
    assert 0.3 < (ranks[1]["labels"] != 0).float().mean() < 0.6
    for r in ranks:
        assert "first batch of epoch 0 differs between the ranks" in r["refused"]


def test_rank_seeds_differ_by_seed_rank_and_epoch_and_one_process_keeps_its_stream():
    from lpl_train.engine.distributed import DistInfo, rank_seed, seed_rank_draws

    seeds = {rank_seed(s, r, e) for s in (0, 1) for r in range(4) for e in range(50)}
    assert len(seeds) == 2 * 4 * 50 and all(0 <= v < 2**64 for v in seeds)
    assert rank_seed(3, 1, 7) == rank_seed(3, 1, 7)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    seed_rank_draws(5, DistInfo(), 3)  # one process: its generator runs on
    assert torch.equal(torch.get_rng_state(), before)
    seed_rank_draws(5, DistInfo(rank=1, world=2), 3)
    assert torch.equal(
        torch.get_rng_state(), torch.Generator().manual_seed(rank_seed(5, 1, 3)).get_state()
    )


def test_a_shard_loader_compares_the_ranks_batches_only_in_the_first_iteration_after_set_epoch(
    monkeypatch,
):
    """The comparison of the ranks' first batches is a collective: run where fit runs it, in the first
    iteration after set_epoch (called on every rank), and nowhere else. A look at a batch on one rank
    (``next(iter(loader))`` on rank 0) entered it alone and waited for the other ranks for good."""
    from lpl_train.engine.distributed import DistInfo, _ShardLoader

    reduced = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, op=None: reduced.append(t))
    loader = _ShardLoader(make_components().train_loader, DistInfo(rank=0, world=2))
    next(iter(loader))  # before any epoch: no collective
    assert reduced == []
    loader.set_epoch(0)
    assert sum(1 for _ in loader) == len(loader) and len(reduced) == 1  # the epoch's first batch
    next(iter(loader))  # after the epoch: none either
    assert len(reduced) == 1
    loader.set_epoch(1)
    next(iter(loader))
    assert len(reduced) == 2


def test_the_ranks_batch_comparison_tells_reordered_and_other_targets_apart(monkeypatch):
    """Two simulated ranks: the comparison passes equal targets and refuses targets that differ, also
    where a weighted sum with weights 1, 2, … would agree ([0, 1, 1, 0] against [1, 0, 0, 1]), one
    class swapped for another, and multi-hot or float targets."""
    from lpl_train.engine.distributed import _check_same_batch

    def ranks_agree(a, b):
        sent = []
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, op=None: sent.append(t))
        _check_same_batch(b, 0)  # the other rank's contribution
        other = sent[0].clone()

        def with_other(t, op=None):  # MAX over this rank's and the other's
            t.copy_(torch.maximum(t, other))

        monkeypatch.setattr(torch.distributed, "all_reduce", with_other)
        try:
            _check_same_batch(a, 0)
        except ValueError as exc:
            assert "first batch of epoch 0 differs between the ranks" in str(exc)
            return False
        return True

    y = torch.tensor([0, 1, 1, 0])
    assert ranks_agree(y, y.clone())
    assert not ranks_agree(y, torch.tensor([1, 0, 0, 1]))  # 1·0+2·1+3·1+4·0 = 1·1+2·0+3·0+4·1
    assert not ranks_agree(torch.tensor([0, 3, 5]), torch.tensor([1, 1, 6]))  # same plain sum
    assert not ranks_agree(y, y[:3])
    multi = (torch.rand(16, 5, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    assert ranks_agree(multi, multi.clone()) and not ranks_agree(multi, multi.flip(0))
    assert not ranks_agree(torch.tensor([0.25, 0.75]), torch.tensor([0.75, 0.25]))


_LOSS_DDP_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_engine import make_components, make_cfg, quiet, C, exit_without_teardown
    from lpl_train.engine import DistInfo, _ShardLoader, fit
    from lpl_train.losses import build_loss
    torch.set_num_threads(1)
    out, world = sys.argv[1], int(sys.argv[2])
    dist = DistInfo.from_env()
    if world > 1:  # our own process group, left without the gloo teardown (exit_without_teardown)
        torch.distributed.init_process_group("gloo")
    comps = make_components(batch_size=16, dropout=0.0, loss=build_loss(LOSS))
    SETUP
    if world > 1:
        comps.train_loader = _ShardLoader(comps.train_loader, dist)
    cfg = make_cfg(epochs=2)
    cfg["optim"]["weight_decay"] = 0.0
    cfg["model"]["params"] = {{}}
    fit(cfg, out, components=comps, log=quiet)
    if world > 1:
        exit_without_teardown()
    """
)


def _loss_ddp_script(loss: str, setup: str = "pass") -> str:
    """The torchrun script of a 2-epoch run with the loss ``build_loss(<loss>)`` (its arguments as Python
    text), ``setup`` (one line) run on the components before the loader is sharded."""
    return _LOSS_DDP_SCRIPT.replace("LOSS", loss).replace("SETUP", setup)


def test_ddp_isda_folds_the_global_batch_into_its_running_statistics(tmp_path):
    """ISDA's class means and covariances are buffers that DDP broadcasts from rank 0 at every forward:
    they took rank 0's share of each batch only (count = half the samples with 2 processes). The batch
    statistics are now summed over the processes, so 2 processes keep the single process's statistics."""
    _one_then_two_processes(_loss_ddp_script('"isda", num_classes=C, lambda0=0.5'), tmp_path)
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["loss"] for d in ("one", "two"))
    assert torch.equal(a["count"], b["count"]) and int(a["count"].sum()) == 2 * N_TRAIN
    torch.testing.assert_close(b["mean"], a["mean"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b["covariance"], a["covariance"], rtol=1e-4, atol=1e-5)


def test_ddp_uneven_last_batch_and_center_loss_match_the_single_process(tmp_path):
    """95 samples in batches of 16: the last batch splits 8 + 7, so each rank's loss is weighted by its
    share n_r·W/m for the ranks' averaged gradient to be the global batch's. The center loss folds the
    global batch's counts and sums into its centres, the epoch's train_loss is the single process's (the
    ranks' mean of their weighted losses: not their sum, not rank 0's alone, and not the mean of the ranks'
    unweighted means, which differs in the uneven batch), and the checkpoint names the 2 processes that
    wrote it."""
    # the last global batch has 15 samples: 8 + 7 over 2 ranks
    script = _loss_ddp_script(
        '"center", num_classes=C, weight=0.1, alpha=0.5',
        "comps.train_loader.x, comps.train_loader.y = comps.train_loader.x[:95], comps.train_loader.y[:95]",
    )
    _one_then_two_processes(script, tmp_path)
    one, two = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("one", "two"))
    assert one["world_size"] == 1 and two["world_size"] == 2
    for k in one["model"]:
        torch.testing.assert_close(two["model"][k], one["model"][k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(two["loss"]["centers"], one["loss"]["centers"], rtol=1e-4, atol=1e-5)
    for a, b in zip(*(engine.read_metrics(tmp_path / d) for d in ("one", "two")), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert abs(a["train_top1_error"] - b["train_top1_error"]) <= 100 / 95 + 1e-9


def test_fit_refuses_components_whose_training_loader_yields_no_batch(tmp_path):
    """With components of one's own, build_components' check is skipped: the Trainer's is the guard. Its
    message names the components' loader, not config keys that built no loader (the config here says
    batch_size 128 and drop_last false)."""
    comps = make_components()
    x, y = comps.train_loader.x, comps.train_loader.y
    comps = dataclasses.replace(comps, train_loader=TinyLoader(x[:0], y[:0], 16, True))
    with pytest.raises(ValueError, match="yields no batches") as err:
        fit(make_cfg(epochs=1), tmp_path / "run", components=comps, log=quiet)
    assert "components given to fit" in str(err.value) and "data." not in str(err.value)
    assert not (tmp_path / "run" / "final.json").exists()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"resume": "no"}, TypeError, "resume must be True or False, got 'no'"),
        ({"progress": "no"}, TypeError, "progress must be True, False or None, got 'no'"),
        ({"log": 5}, TypeError, "log must be a callable"),
        ({"stop_after_epoch": True}, ValueError, "stop_after_epoch must be a positive int"),
    ],
)
def test_fit_refuses_bad_keyword_arguments_by_name_before_writing(tmp_path, kwargs, error, match):
    """A string for a flag would read as true (``resume="no"`` resumed; a bool as an epoch count), and a
    log that cannot be called failed after the run folder was started: each is refused first, by name."""
    with pytest.raises(error, match=match):
        fit(
            make_cfg(epochs=1),
            tmp_path / "run",
            components=make_components(),
            **{"log": quiet, **kwargs},
        )
    assert not (tmp_path / "run").exists()


def test_a_warm_up_in_iterations_longer_than_the_run_is_warned(tmp_path):
    """warmup_epochs past the last epoch is warned with the config; warmup_iters needs the loader's
    length, so the run warns when it starts (the lr never reached its base value, silently)."""
    n_iter = len(make_components().train_loader)
    for warm, warned in ((2 * n_iter, True), (2 * n_iter - 1, False)):
        cfg = make_cfg(epochs=2)
        cfg["schedule"].update(warmup_epochs=0, warmup_iters=warm)
        lines = []
        fit(cfg, tmp_path / str(warm), components=make_components(), log=lines.append)
        hit = [x for x in lines if x.startswith("warning: schedule.warmup_iters")]
        want = [f"warning: schedule.warmup_iters={warm} >= the run's 2 x {n_iter} = {2 * n_iter} "
                "iterations: the run ends inside the warm-up"]  # fmt: skip
        assert hit == (want if warned else []), lines
