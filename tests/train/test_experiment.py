"""The shared experiment machinery (sweep and studies): planning, the executor's skip/lock/resume rules, the
study CLI, and one committed study run reproduced bit for bit through the new path."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lpl_train import experiment as X
from lpl_train import experiment_throughput as T
from lpl_train import study as S
from lpl_train.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class FakeRunner:
    """Records what the executor asked for; a run is finished when its folder holds done.json."""

    calls: list = field(default_factory=list)

    def finished(self, run):
        return (run.out / "done.json").is_file()

    def load(self, run):
        return json.loads((run.out / "done.json").read_text())

    def train(self, run, resume):
        from lpl_train.engine import RunLocked

        if (
            run.out / "RUNNING"
        ).is_file():  # as engine.fit does when another process holds the lock
            raise RunLocked(f"run folder {str(run.out)!r} is in use", run.out / "RUNNING")
        self.calls.append((run.key, resume))
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "done.json").write_text(json.dumps({"key": run.key, "resume": resume}))
        return {"key": run.key}


def test_executor_reads_back_finished_resumes_checkpoints_and_leaves_locked_runs(tmp_path):
    runs = [X.PlannedRun(k, tmp_path / k, None, 0) for k in ("a", "b", "c", "d")]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "done.json").write_text('{"key": "a", "old": true}')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoint.pt").write_bytes(b"")  # interrupted: resume
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "RUNNING").write_text("123")  # another process trains it
    runner, logs = FakeRunner(), []
    plan = X.execute(runs, runner, dry_run=True, log=logs.append)
    assert [o.status for o in plan] == [
        "done",
        "planned",
        "planned",
        "planned",
    ] and not runner.calls
    out = X.execute(runs, runner, log=logs.append)
    assert {o.run.key: o.status for o in out} == {
        "a": "done",
        "b": "trained",
        "c": "locked",
        "d": "trained",
    }
    assert runner.calls == [("b", True), ("d", False)]
    assert out[0].result == {"key": "a", "old": True}
    assert any(line.startswith("skip (locked: another process trains it)") for line in logs)
    with pytest.raises(ValueError, match="jobs"):
        X.execute(runs, runner, jobs=0)


def _records(folder: Path, recs: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_throughput_counts_the_runs_trained_now_from_their_records(tmp_path):
    _records(tmp_path / "a", [{"epoch": 0, "images_per_s": 100.0, "train_time_s": 2.0},
                              {"epoch": 1, "images_per_s": 100.0, "train_time_s": 2.0}])  # fmt: skip
    _records(tmp_path / "b", [{"epoch": 0, "images_per_s": None, "train_time_s": 0.0},
                              {"epoch": 1, "images_per_s": 300.0, "train_time_s": 1.0}])  # fmt: skip
    _records(tmp_path / "done", [{"epoch": 0, "images_per_s": 9e9, "train_time_s": 1.0}])
    runs = {k: X.PlannedRun(k, tmp_path / k, None, 0) for k in ("a", "b", "done", "none")}
    outcomes = [X.Outcome(runs["a"], "trained"), X.Outcome(runs["b"], "trained"),
                X.Outcome(runs["done"], "done"), X.Outcome(runs["none"], "trained")]  # fmt: skip
    tp = T.throughput(outcomes, wall_s=10.0)
    # a: 400 images in 4 s; b: 300 in 1 s (its epoch without a rate left out); finished runs and runs
    # without records are not counted; records without train_end give no common window
    assert tp == {"runs": 2, "images": 700, "aggregate_images_per_s": 70.0,
                  "mean_run_images_per_s": 200.0, "overlap_images_per_s": None,
                  "overlap_s": 0.0}  # fmt: skip
    with pytest.raises(ValueError, match="wall_s"):
        T.throughput(outcomes, wall_s=0)
    # a run resumed from its epoch 1: only the epochs trained by this call count
    tp = T.throughput([X.Outcome(runs["a"], "trained", None, first_epoch=1)], wall_s=1.0)
    assert tp["images"] == 200 and tp["runs"] == 1


def test_a_runs_own_rate_is_its_images_over_its_training_time(tmp_path):
    """``mean_run_images_per_s`` rates each run on all the epochs it trained, not on its last epoch: a
    run of 100 images in 2 s then 300 in 1 s trained at 400 / 3 images/s; a second at 50 images/s."""
    _records(tmp_path / "a", [{"epoch": 0, "images_per_s": 50.0, "train_time_s": 2.0},
                              {"epoch": 1, "images_per_s": 300.0, "train_time_s": 1.0}])  # fmt: skip
    _records(tmp_path / "b", [{"epoch": 0, "images_per_s": 50.0, "train_time_s": 4.0}])
    outcomes = [X.Outcome(X.PlannedRun(k, tmp_path / k, None, 0), "trained") for k in "ab"]
    tp = T.throughput(outcomes, wall_s=10.0)
    assert tp["images"] == 600 and tp["aggregate_images_per_s"] == pytest.approx(60.0)
    assert tp["mean_run_images_per_s"] == pytest.approx((400 / 3 + 50.0) / 2)


def test_runs_at_once_are_rated_over_the_time_they_all_trained_steadily(tmp_path):
    """Two runs whose epochs overlap in part: the window opens when the later run starts its second epoch
    and closes when the earlier ends its last; epochs count in proportion to their time inside it."""
    # run a: epochs [0, 2], [3, 5], [6, 8] of 100 images each (a 1 s gap between epochs: evaluation)
    a = [(0.0, 2.0, 100.0), (3.0, 5.0, 100.0), (6.0, 8.0, 100.0)]
    # run b started later: epochs [1, 4], [4, 7], [7, 10] of 60 images each
    b = [(1.0, 4.0, 60.0), (4.0, 7.0, 60.0), (7.0, 10.0, 60.0)]
    rate, window = T.overlap_throughput([a, b])
    # window: from max(3 (a's 2nd epoch), 4 (b's 2nd)) = 4 to min(8, 10) = 8, 4 s long.
    # a: [3,5] has 1 s of 2 inside (50 images), [6,8] all (100); b: [4,7] all (60), [7,10] 1 s of 3 (20)
    assert window == 4.0 and rate == pytest.approx((50 + 100 + 60 + 20) / 4.0)
    # one run alone: its steady epochs and the gaps between them, [3, 8]: 200 images in 5 s
    assert T.overlap_throughput([a]) == (pytest.approx(40.0), 5.0)
    assert T.overlap_throughput([a], skip_first=False) == (pytest.approx(300 / 8), 8.0)
    # no common window (b starts its second epoch after a has ended), a run of one epoch, no run
    late = [(s + 20, e + 20, n) for s, e, n in b]
    assert T.overlap_throughput([a, late]) == (None, 0.0)
    assert T.overlap_throughput([a, b[:1]]) == (None, 0.0) and T.overlap_throughput([]) == (
        None,
        0.0,
    )
    # from records: train_end and train_time_s give each epoch's span; throughput reports the window
    recs = {"a": a, "b": b}
    for key, spans in recs.items():
        _records(tmp_path / key, [{"epoch": i, "images_per_s": n / (e - s), "train_time_s": e - s,
                                   "train_end": e} for i, (s, e, n) in enumerate(spans)])  # fmt: skip
    from lpl_train.engine import read_metrics

    assert T.epoch_spans(read_metrics(tmp_path / "b")) == b
    assert T.epoch_spans([{"epoch": 0, "images_per_s": 5.0, "train_time_s": 1.0}]) == []  # no time
    runs = [X.Outcome(X.PlannedRun(k, tmp_path / k, None, 0), "trained") for k in recs]
    tp = T.throughput(runs, wall_s=10.0)
    assert tp["overlap_s"] == 4.0 and tp["overlap_images_per_s"] == pytest.approx(230 / 4.0)


def test_an_epoch_wholly_outside_the_common_window_adds_nothing():
    """Run b's fourth epoch, [10, 13], starts after run a has ended (the window is [4, 8]): it adds no
    images (nor takes any away): the rate is that of the first three epochs of each, 230 images in 4 s."""
    a = [(0.0, 2.0, 100.0), (3.0, 5.0, 100.0), (6.0, 8.0, 100.0)]
    b = [(1.0, 4.0, 60.0), (4.0, 7.0, 60.0), (7.0, 10.0, 60.0), (10.0, 13.0, 60.0)]
    assert T.overlap_throughput([a, b]) == (pytest.approx((50 + 100 + 60 + 20) / 4.0), 4.0)


def test_a_resumed_run_counts_the_epochs_it_had_before_this_call(tmp_path):
    """The executor notes how many epoch records a resumed run held before it trained again, so that
    :func:`throughput` leaves them out; a fresh run starts at 0."""
    _records(tmp_path / "b", [{"epoch": 0}, {"epoch": 1}])
    (tmp_path / "b" / "checkpoint.pt").write_bytes(b"")  # interrupted after 2 epochs: resume
    runs = [X.PlannedRun(k, tmp_path / k, None, 0) for k in ("b", "new")]
    out = X.execute(runs, FakeRunner(), log=lambda s: None)
    assert {o.run.key: (o.status, o.first_epoch) for o in out} == {
        "b": ("trained", 2),
        "new": ("trained", 0),
    }


@dataclass
class ThreadsRunner:
    """Reports the torch threads of the process that trains (a worker's own, with --jobs > 1)."""

    def finished(self, run):
        return False

    def load(self, run):
        return {}

    def train(self, run, resume):
        import torch

        return {"threads": torch.get_num_threads(), "pid": os.getpid()}


@dataclass
class FailingRunner(FakeRunner):
    """Run ``b`` raises after its folder exists (as a run that fails mid-training), ``c`` before."""

    def train(self, run, resume):
        if run.key in ("b", "c"):
            if run.key == "b":
                run.out.mkdir(parents=True, exist_ok=True)
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB")
        return super().train(run, resume)


@pytest.mark.parametrize("jobs", [1, 2])
def test_keep_going_reports_a_failed_run_and_trains_the_others(tmp_path, jobs):
    def plan(root):
        return [X.PlannedRun(k, root / k, None, 0) for k in ("a", "b", "c", "d")]

    with pytest.raises(
        RuntimeError, match="CUDA out of memory"
    ):  # by default the error stops the call
        X.execute(plan(tmp_path / "stop"), FailingRunner(), jobs=jobs, log=lambda s: None)
    if jobs == 1:
        assert not (tmp_path / "stop" / "d").exists()  # the runs after it are not trained
    tmp_path = tmp_path / "go"
    logs: list[str] = []
    out = X.execute(plan(tmp_path), FailingRunner(), jobs=jobs, log=logs.append, keep_going=True)
    got = {o.run.key: o.status for o in out}
    assert got == {"a": "trained", "b": "failed", "c": "failed", "d": "trained"}
    failed = {o.run.key: o.result for o in out if o.status == "failed"}
    why = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"  # one line
    assert failed == {"b": {"error": why, "log": str(tmp_path / "b" / "train.log")},
                      "c": {"error": why, "log": None}}  # fmt: skip
    log = (tmp_path / "b" / "train.log").read_text()
    assert (
        log.startswith(f"FAILED: {why}\nTraceback (most recent call last):") and "in train" in log
    )
    assert not (tmp_path / "c").exists()  # nothing written for a run that left no folder
    assert sum(f"FAILED ({why})" in line for line in logs) == 2


def test_parallel_workers_train_on_one_thread_each(tmp_path, monkeypatch):
    """N runs at once on N workers: one torch thread each, so that they do not oversubscribe the cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what a worker would take without being told
    runs = [X.PlannedRun(k, tmp_path / k, None, 0) for k in ("a", "b")]
    done = X.execute(runs, ThreadsRunner(), jobs=2, log=lambda s: None)
    assert [o.result["threads"] for o in done] == [1, 1]
    assert os.getpid() not in {o.result["pid"] for o in done}


def test_grid_parsing_and_sweep_plan(tmp_path):
    grid = X.parse_grid(["optim.lr=0.1,0.05", "loss.params.split=mean, index"])
    assert grid == [("optim.lr", [0.1, 0.05]), ("loss.params.split", ["mean", "index"])]
    with pytest.raises(ValueError, match="key=v1,v2"):
        X.parse_grid(["optim.lr"])
    assert X.point_name({"a": "x/y", "b": 1}) == "a=x_y,b=1" and X.point_name([]) == "default"
    runs = X.plan_sweep("gaussian_linear_ce", [], grid[:1], [0, 1], 1, tmp_path)
    assert [r.key for r in runs] == ["optim.lr=0.1/seed0", "optim.lr=0.1/seed1",
                                     "optim.lr=0.05/seed0", "optim.lr=0.05/seed1"]  # fmt: skip
    assert [(r.cfg["optim"]["lr"], r.cfg["train"]["seed"]) for r in runs] == [
        (0.1, 0), (0.1, 1), (0.05, 0), (0.05, 1)]  # fmt: skip
    assert runs[0].out == tmp_path / "optim.lr=0.1" / "seed0"
    # values that point_name maps to one folder name are refused, not trained into one folder
    with pytest.raises(ValueError, match=r"share the run folder 'description=run_a'"):
        X.plan_sweep("gaussian_linear_ce", [], [("description", ["run a", "run_a"])], [0], 1,
                     tmp_path)  # fmt: skip


def test_a_sweep_too_large_to_plan_is_refused_before_planning(tmp_path, monkeypatch):
    """Each planned run's config is loaded before anything prints: an absurd --seeds (10**11) would plan
    for hours and exhaust the memory. Such a sweep is refused before the first config is loaded."""
    import lpl_train.config as C

    loads, real = [], C.load_config

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "load_config", counting)
    grid = X.parse_grid(["optim.lr=0.1,0.05"])
    with monkeypatch.context() as m:  # first at a small limit, so that a regression fails fast
        m.setattr(X, "MAX_SWEEP_RUNS", 4)
        assert len(X.plan_sweep("gaussian_linear_ce", [], grid, range(2), 1, tmp_path)) == 4
        loads.clear()
        with pytest.raises(
            ValueError, match=r"would plan 6 runs .* more than 4 in one call; split"
        ):
            X.plan_sweep("gaussian_linear_ce", [], grid, range(3), 1, tmp_path)
        assert loads == []
    with pytest.raises(ValueError, match=r"would plan 200000000000 runs \(2 grid point\(s\) x 1"):
        X.plan_sweep("gaussian_linear_ce", [], grid, range(10**11), 1, tmp_path)
    assert loads == []


def test_study_command_errors_and_report_only_sources(tmp_path, capsys):
    assert main(["study", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist (shipped studies: " in err and "fmnist" in err and "ablation" in err
    assert S.main(["--study", "fmnist", "--report-only", "--figures", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    shipped = S.shipped_records(S.load_study())
    lines = [x for x in shipped.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert f"{len(lines)} records from {shipped}" in out
    assert (tmp_path / "study-tables.md").is_file() and (
        tmp_path / "fig11-loss-variation.png"
    ).is_file()
    assert not (tmp_path / "study-runs.jsonl").exists()  # read, not rewritten
    # the user's own records in the figures folder come first: a subset of the committed ones here
    lines = S.shipped_records(S.load_study()).read_text().splitlines()
    (tmp_path / "study-runs.jsonl").write_text("\n".join(lines[:30]) + "\n")
    assert S.main(["--study", "fmnist", "--report-only", "--figures", str(tmp_path)]) == 0
    assert f"30 records from {tmp_path / 'study-runs.jsonl'}" in capsys.readouterr().out
    # the quick mode writes into its --out folder, never into figures/
    assert main(["study", "--quick", "--report-only", "--out", str(tmp_path / "q")]) == 2
    assert str(tmp_path / "q" / "study-quick-runs.jsonl") in capsys.readouterr().err
    # --jobs where nothing is trained in parallel is refused, not silently ignored
    for mode in ("--report-only", "--fig11-live"):
        assert main(["study", mode, "--jobs", "2", "--figures", str(tmp_path / "j")]) == 2
        assert f"--jobs has no effect with {mode}" in capsys.readouterr().err
    assert not (tmp_path / "j").exists()


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST idx files not installed")
def test_first_epoch_of_a_committed_study_run_is_reproduced_bit_for_bit(tmp_path):
    """The selection run of CE on Fashion-MNIST-LT 100:1, trained through the study runner for its first
    epoch (of 12), gives the committed record's first-epoch loss variation exactly (same data split, model
    initialisation, batch order and loss). The whole record (12 epochs, ~40 s) matches too."""
    import torch

    from lpl_train.engine import read_metrics
    from lpl_train.study_runs import train_run

    torch.set_num_threads(1)
    study = S.load_study()
    key = "fmnist_lt100/ce/default/seed0"
    (spec,) = [s for s in S.plan_runs(study) if s["key"] == key]
    committed = {r["key"]: r for r in S.read_records(S.shipped_records(study))}[key]
    train_run(study, spec, tmp_path / "run", resume=False, stop_after_epoch=1)
    lv = read_metrics(tmp_path / "run")[0]["loss_variation"]
    assert lv["relative_variation"] == committed["loss_variation"][0]["relative_variation"]
    assert lv["count"] == committed["loss_variation"][0]["count"] == committed["class_counts"]


_SLEEPER = """
import os, sys, time
from pathlib import Path
from lpl_train import experiment as X
from lpl_train import experiment_throughput as T

class Sleeper:
    def finished(self, run):
        return False
    def load(self, run):
        return {}
    def train(self, run, resume):
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "pid").write_text(str(os.getpid()))
        time.sleep(300)
        return {}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    X.execute([X.PlannedRun(k, out / k, None, 0) for k in "ab"], Sleeper(), jobs=2, log=lambda s: None)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_parallel_workers_stop_when_the_sweep_process_is_killed_or_interrupted(tmp_path, how):
    """`--jobs N`: killing the sweep/study process (even with SIGKILL), or Ctrl-C in it, must not leave
    workers training on unseen, holding their run folders' locks."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sleeper.py"
    script.write_text(_SLEEPER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs")], cwd=ROOT)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(pids) < 2:
            files = [tmp_path / "runs" / k / "pid" for k in "ab"]
            pids = [int(f.read_text()) for f in files if f.is_file() and f.read_text()]
            time.sleep(0.2)
        assert len(pids) == 2, "the two workers did not start"
        assert all(_alive(p) for p in pids)
        proc.send_signal(getattr(signal, how))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), f"workers still running after {how} of the parent"
    finally:
        proc.kill()
        proc.wait()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


_CRASHER = """
import os, signal, sys
from pathlib import Path
from lpl_train import experiment as X
from lpl_train import experiment_throughput as T

class Crasher:
    def finished(self, run):
        return False
    def load(self, run):
        return {}
    def train(self, run, resume):
        if run.key == "a":  # as the out-of-memory killer would
            os.kill(os.getpid(), signal.SIGKILL)
        return {}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    X.execute([X.PlannedRun(k, out / k, None, 0) for k in "abc"], Crasher(), jobs=2, log=print)
"""


def test_a_worker_that_dies_stops_the_sweep_instead_of_waiting_forever(tmp_path):
    """`--jobs N`: a worker killed while it trains (the out-of-memory killer) was replaced by the pool,
    which then waited forever for the outcome of the run the dead worker held. Now the sweep stops with
    an error that says what happened and how to go on."""
    import subprocess
    import sys

    script = tmp_path / "crasher.py"
    script.write_text(_CRASHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "runs")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "ChildProcessError: a worker process died (killed by signal 9, e.g. by the out-of-memory "
        "killer) while it trained a run; the runs not finished resume from their checkpoints when the "
        "same command is run again"
    )


def test_a_sweep_refuses_a_repeated_grid_key_and_a_seed_it_would_override(tmp_path):
    from lpl_train.config import ConfigError

    # the second --grid of a key used to replace the first (dict(zip(...)) kept only optim.lr=0.2)
    with pytest.raises(
        ConfigError, match=r"'optim.lr' is given twice; list all its values in one --grid"
    ):
        X.plan_sweep("gaussian_linear_ce", [], X.parse_grid(["optim.lr=0.1", "optim.lr=0.2"]), [0],
                     1, tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="'a' is given twice"):
        X.expand_grid([("a", [1]), ("a", [2])])
    # train.seed is the sweep's own (seed<k> folders); a grid or --set of it trained seed 0 everywhere
    for overrides, grid, flag in (
        ([], [("train.seed", [0, 1])], "--grid train.seed"),
        (["train.seed=7"], [], "--set train.seed=7"),
        (["train={seed = 7, device = 'cpu'}"], [], "--set train="),
        ([], [("train", [{"seed": 1}])], "--grid train"),
    ):
        with pytest.raises(
            ConfigError, match=rf"{flag}.*sets train.seed itself, 0..N-1 with --seeds N"
        ):
            X.plan_sweep("gaussian_linear_ce", overrides, grid, [0], 1, tmp_path)
    # a --set of a grid key (or of a key inside one) would be replaced by the grid in every point
    with pytest.raises(ConfigError, match=r"--set optim.lr=0.3 is replaced by --grid optim.lr"):
        X.plan_sweep(
            "gaussian_linear_ce", ["optim.lr=0.3"], [("optim.lr", [0.1])], [0], 1, tmp_path
        )
    with pytest.raises(ConfigError, match=r"--grid loss.params.tau lies inside --grid loss.params"):
        X.plan_sweep("gaussian_linear_lpl", [], [("loss.params", [{}]), ("loss.params.tau", [1])],
                     [0], 1, tmp_path)  # fmt: skip
    assert not any(tmp_path.iterdir())


def test_a_grid_key_inside_another_is_refused_in_either_order(tmp_path):
    """The inner key given first and the table holding it second is the same conflict as the reverse."""
    from lpl_train.config import ConfigError

    with pytest.raises(ConfigError, match=r"--grid loss.params.tau lies inside --grid loss.params"):
        X.plan_sweep("gaussian_linear_lpl", [], [("loss.params.tau", [1]), ("loss.params", [{}])],
                     [0], 1, tmp_path)  # fmt: skip
    assert not any(tmp_path.iterdir())


def test_grid_values_are_split_on_the_commas_outside_brackets_and_quotes(tmp_path):
    from lpl_train.config import ConfigError

    grid = X.parse_grid(
        ["schedule.milestones=[1,2],[3]", 'description="a, b",c', "loss.params={a = [1, 2]}"]
    )
    assert grid == [("schedule.milestones", [[1, 2], [3]]), ("description", ["a, b", "c"]),
                    ("loss.params", [{"a": [1, 2]}])]  # fmt: skip
    runs = X.plan_sweep("gaussian_linear_ce", ["schedule.kind='step'"], grid[:1], [0], 3, tmp_path)
    assert [r.cfg["schedule"]["milestones"] for r in runs] == [[1, 2], [3]]
    with pytest.raises(
        ConfigError, match=r"unbalanced bracket in its values; write lists as \[1, 2\]"
    ):
        X.parse_grid(["schedule.milestones=[1,2],[3"])
    with pytest.raises(ConfigError, match=r"unbalanced quote"):
        X.parse_grid(['description="a,b'])
    # a quote or a bracket inside a bare word is part of it, as before
    assert X.parse_grid(["description=bob's run,a[1]"]) == [("description", ["bob's run", "a[1]"])]
    with pytest.raises(ConfigError, match=r"'\[1,,2\]' is not a TOML value"):
        X.parse_grid(["schedule.milestones=[1,,2],[3]"])


def test_every_grid_point_is_built_before_the_sweep_starts_and_a_bad_one_is_named(tmp_path):
    from lpl_train.config import ConfigError

    grid = [("loss.params.alpha", [0.25, -1])]
    with pytest.raises(
        ConfigError,
        match=r"^grid point loss.params.alpha=-1: config key 'loss.params.alpha': alpha must",
    ):
        X.plan_sweep("gaussian_linear_lpl", [], grid, [0, 1], 1, tmp_path)
    assert len(X.plan_sweep("gaussian_linear_lpl", [], grid, [0], 1, tmp_path, check=False)) == 2
    # a model that does not fit the data: the batch the first second of the run would pass through it
    with pytest.raises(
        ConfigError, match=r"^grid point model.params.in_features=3: model 'linear' does not"
    ):
        X.plan_sweep(
            "gaussian_linear_lpl", [], [("model.params.in_features", [2, 3])], [0], 1, tmp_path
        )
    # a value the config itself refuses names its grid point too
    with pytest.raises(
        ConfigError, match=r"^grid point optim.lr=-1: config key 'optim.lr' has value -1"
    ):
        X.plan_sweep("gaussian_linear_lpl", [], [("optim.lr", [0.1, -1])], [0], 1, tmp_path)
    assert not any(tmp_path.iterdir())


def test_config_runner_check_finds_what_its_run_folders_would_refuse_without_writing(
    tmp_path, monkeypatch
):
    from lpl_train.config import dumps_toml, load_config
    from lpl_train.engine import RunFolderError

    (run,) = X.plan_sweep("gaussian_linear_ce", [], [], [0], 2, tmp_path / "sw")
    runner = X.ConfigRunner(quiet=True)
    runner.check(run)  # nothing there yet: a fresh run
    assert not (tmp_path / "sw").exists()
    # a finished run of another config (another --epochs): the real sweep refuses it when it gets there
    run.out.mkdir(parents=True)
    other = load_config("gaussian_linear_ce", ["train.seed=0"], 3)
    (run.out / "config.toml").write_text(dumps_toml(other))
    (run.out / "final.json").write_text("{}")
    with pytest.raises(
        RunFolderError, match=r"holds a finished run of another config .*schedule.epochs"
    ):
        runner.check(run)
    logs: list[str] = []
    with pytest.raises(RunFolderError, match="holds a finished run of another config"):
        X.execute([run], runner, dry_run=True, log=logs.append)  # the dry run says so too
    assert logs == []
    # a checkpointed run of another config would not resume
    (run.out / "final.json").unlink()
    _checkpoint(run.out, dumps_toml(other))
    with pytest.raises(RunFolderError, match=r"the config differs .* in schedule.epochs"):
        runner.check(run)
    _checkpoint(run.out, dumps_toml(run.cfg))
    (run.out / "config.toml").write_text(dumps_toml(run.cfg))
    runner.check(run)
    assert X.execute([run], runner, dry_run=True, log=logs.append)[0].status == "planned"
    assert logs == [f"would resume: {run.out}"]
    # a sweep folder inside a run folder
    (tmp_path / "g1").mkdir()
    (tmp_path / "g1" / "final.json").write_text("{}")
    (inner,) = X.plan_sweep("gaussian_linear_ce", [], [], [0], 2, tmp_path / "g1" / "sub")
    with pytest.raises(FileExistsError, match=r"lies inside the run folder .*g1'"):
        runner.check(inner)
    assert not (tmp_path / "g1" / "sub").exists()
    # a run folder that could not be created or written
    (tmp_path / "afile").write_text("")
    (blocked,) = X.plan_sweep("gaussian_linear_ce", [], [], [0], 2, tmp_path / "afile" / "sw")
    with pytest.raises(
        RunFolderError, match=r"'.*afile/sw/default/seed0': a part of the path is a file"
    ):
        runner.check(blocked)
    (fresh,) = X.plan_sweep("gaussian_linear_ce", [], [], [0], 2, tmp_path / "new")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root may write anywhere: as a user
    with pytest.raises(
        RunFolderError, match=r"cannot write run folder .*seed0': Permission denied"
    ):
        runner.check(fresh)


def _checkpoint(folder: Path, config: str) -> None:
    """A checkpoint.pt as the engine writes one (without real state) made with ``config``."""
    import torch

    state = {"format": 1, "epoch": 1, "step": 1, "model": {}, "loss": {}, "optimizer": {}, "rng": {},
             "config": config}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "checkpoint.pt")


def test_the_sweep_check_compares_a_checkpoints_own_config_as_its_resume_will(tmp_path):
    from lpl_train.config import dumps_toml, load_config
    from lpl_train.engine import RunFolderError

    runs = X.plan_sweep("gaussian_linear_ce", [], [], [0, 1], 2, tmp_path / "sw")
    runner = X.ConfigRunner(quiet=True)
    other = dumps_toml(load_config("gaussian_linear_ce", ["train.seed=1", "optim.lr=0.5"], 2))
    # seed1 was checkpointed with another config and its config.toml is gone: its resume would be
    # refused, so the sweep stops before anything trains (seed0 is not trained into --out)
    _checkpoint(runs[1].out, other)
    with pytest.raises(RunFolderError, match=r"checkpoint .*seed1/checkpoint.pt.* in optim.lr"):
        runner.check(runs[1])
    with pytest.raises(RunFolderError, match=r"in optim.lr"):
        X.execute(runs, runner, log=lambda s: None)
    assert not runs[0].out.exists()
    # a config.toml edited by hand while the checkpoint is the sweep's: the resume rewrites it, so the
    # check lets it through
    _checkpoint(runs[1].out, dumps_toml(runs[1].cfg))
    (runs[1].out / "config.toml").write_text(other)
    runner.check(runs[1])
    # a damaged checkpoint is refused up front, naming it
    (runs[1].out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RunFolderError, match=r"seed1/checkpoint.pt' is truncated"):
        runner.check(runs[1])


def test_a_finished_run_without_its_config_toml_is_compared_with_its_checkpoint(tmp_path):
    from lpl_train.config import dumps_toml, load_config
    from lpl_train.engine import RunFolderError

    (run,) = X.plan_sweep("gaussian_linear_ce", [], [], [0], 2, tmp_path / "sw")
    runner = X.ConfigRunner(quiet=True)
    other = dumps_toml(load_config("gaussian_linear_ce", ["train.seed=0", "optim.lr=0.5"], 2))
    _checkpoint(run.out, other)
    (run.out / "final.json").write_text('{"name": "other"}')
    for call in (runner.check, runner.load):  # not taken for this config's result
        with pytest.raises(RunFolderError, match=r"finished run of another config .*optim.lr"):
            call(run)
    _checkpoint(run.out, dumps_toml(run.cfg))
    runner.check(run)
    assert runner.load(run) == {"name": "other"}
    # a damaged final.json is named, up front and when read
    (run.out / "final.json").write_text('{"name": ')
    for call in (runner.check, runner.load):
        with pytest.raises(ValueError, match=r"seed0/final.json' is not a JSON object"):
            call(run)


def test_the_sweep_pre_check_builds_each_point_once_not_each_seed(tmp_path, monkeypatch):
    import lpl_train.engine.components as comp

    real, seeds = comp.check_config, []

    def counting(c, data_cache=None):
        seeds.append(c["train"]["seed"])
        return real(c, data_cache)

    monkeypatch.setattr(comp, "check_config", counting)
    runs = X.plan_sweep("gaussian_linear_lpl", [], [("loss.params.alpha", [0.25, 0.5])], [0, 1, 2],
                        1, tmp_path)  # fmt: skip
    assert len(runs) == 6  # 2 points x 3 seeds
    assert seeds == [0, 0]  # one build per point, from its first seed


def test_a_resumed_runs_epochs_trained_now_are_those_after_its_checkpoint(tmp_path):
    """A run resumed from an earlier checkpoint than its records reach (checkpoint.prev.pt renamed into
    place): the call trains from the checkpoint's epoch, and throughput counts those epochs, not only
    the ones past the records found before it started."""

    from lpl_train.engine import fit
    from tests.train.test_engine import make_cfg, make_components, quiet

    out = tmp_path / "r"
    fit(make_cfg(epochs=4), out, components=make_components(), stop_after_epoch=3, log=quiet)
    os.replace(out / "checkpoint.prev.pt", out / "checkpoint.pt")  # epoch 2's; 3 records

    class Runner:
        def finished(self, run):
            return (run.out / "final.json").is_file()

        def train(self, run, resume):
            return fit(make_cfg(epochs=4), run.out, components=make_components(), resume=resume,
                       log=quiet)  # fmt: skip

    o = X._run_one(Runner(), X.PlannedRun("r", out, None, 0))
    assert o.status == "trained" and o.first_epoch == 2  # epochs 2 and 3 trained by this call
    tp = T.throughput([o], wall_s=1.0)
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert tp["images"] == round(sum(r["images_per_s"] * r["train_time_s"] for r in recs[2:]))
