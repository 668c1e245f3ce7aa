"""Optional TensorBoard scalars of a run (train.tensorboard): what is logged, at which step, on resume, and
the one-line error when the package is missing. A stand-in SummaryWriter records the calls, so the test
needs neither the tensorboard package nor its event-file format."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from lpl_train.engine import fit
from lpl_train.engine.files import RunFolderError
from tests.train.test_engine import make_cfg, make_components, quiet

torch.set_flush_denormal(True)


class FakeWriter:
    instances: list[FakeWriter] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step, self.scalars = log_dir, purge_step, []
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    mod = types.ModuleType("torch.utils.tensorboard")
    mod.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", mod)
    FakeWriter.instances = []
    return FakeWriter


def test_every_epoch_record_is_logged_at_its_step(tmp_path, fake_tensorboard):
    out = tmp_path / "r"
    fit(make_cfg(epochs=2, tensorboard=True), out, components=make_components(), log=quiet)
    (w,) = fake_tensorboard.instances
    assert w.log_dir == str(out / "tensorboard") and w.purge_step == 1
    steps = {tag: [s for t, _, s in w.scalars if t == tag] for tag, _, _ in w.scalars}
    assert steps["train_loss"] == [1, 2] and steps["test_top1_error"] == [1, 2]
    assert "epoch" not in steps and "train_end" not in steps and "best/test_top1_error" in steps
    recs = [line for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    import json

    logged = [v for t, v, _ in w.scalars if t == "test_top1_error"]
    assert logged == [json.loads(r)["test_top1_error"] for r in recs]


def test_the_writer_is_closed_when_the_run_ends(tmp_path, fake_tensorboard):
    """Each SummaryWriter holds a thread: a sweep or a study of many runs in one process (``--jobs 1``,
    or a worker of ``--jobs N``) kept one per run it had trained. Closed at the end of the run, as after
    an error in it."""
    fit(
        make_cfg(epochs=1, tensorboard=True),
        tmp_path / "a",
        components=make_components(),
        log=quiet,
    )
    with pytest.raises(ValueError, match="stop"):
        fit(make_cfg(epochs=2, tensorboard=True), tmp_path / "b", components=make_components(),
            log=lambda line: _stop_at_epoch_line(line))  # fmt: skip
    assert [getattr(w, "closed", False) for w in fake_tensorboard.instances] == [True, True]


def _stop_at_epoch_line(line: str) -> None:
    if line.startswith("epoch 1/"):
        raise ValueError("stop")


def test_a_resumed_run_purges_the_epochs_it_redoes(tmp_path, fake_tensorboard):
    out = tmp_path / "r"
    cfg = make_cfg(epochs=3, tensorboard=True)
    fit(cfg, out, components=make_components(), stop_after_epoch=1, log=quiet)
    fit(cfg, out, components=make_components(), resume=True, log=quiet)
    first, second = fake_tensorboard.instances
    assert first.purge_step == 1 and second.purge_step == 2  # the resumed run starts at epoch 2
    assert sorted({s for _, _, s in second.scalars}) == [2, 3]


def test_off_by_default_and_may_change_on_resume(tmp_path, fake_tensorboard):
    out = tmp_path / "r"
    fit(make_cfg(epochs=2), out, components=make_components(), stop_after_epoch=1, log=quiet)
    assert not fake_tensorboard.instances and not (out / "tensorboard").exists()
    fit(
        make_cfg(epochs=2, tensorboard=True),
        out,
        components=make_components(),
        resume=True,
        log=quiet,
    )
    assert len(fake_tensorboard.instances) == 1


def test_missing_package_is_one_line_naming_the_key_and_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(
        RunFolderError, match=r"train.tensorboard = true needs the tensorboard package"
    ):
        fit(make_cfg(epochs=1, tensorboard=True), tmp_path / "r", components=make_components(),
            log=quiet)  # fmt: skip
