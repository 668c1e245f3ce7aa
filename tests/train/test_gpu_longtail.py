"""benchmarks/gpu_longtail.py's sizing: the probe's estimate of the protocol's remaining time, and the decision
to start it or not (run shortened, on tiny Fashion-MNIST files, with a probe)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_capture import load_benchmark
from .test_data_fmnist import make_fmnist


@pytest.fixture
def gl(monkeypatch):
    return load_benchmark("gpu_longtail", monkeypatch)


def _probe_folder(root: Path, spans: list[tuple[float, float]], images: float = 100.0) -> Path:
    """A probed run folder: one record per epoch trained from ``start`` to ``end`` (Unix time), ``images``
    each, as the engine writes them."""
    root.mkdir(parents=True)
    recs = [{"epoch": e, "train_time_s": b - a, "images_per_s": images / (b - a), "train_end": b}
            for e, (a, b) in enumerate(spans)]  # fmt: skip
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def test_estimate_rates_the_runs_over_the_time_they_all_trained(gl, tmp_path):
    """Two runs probed for 3 epochs in 20 s: the rate is theirs together while both were past their first
    epoch (the first warms up and records the captured step), the images left go at that rate, and the
    fixed part of the probe is paid again when the runs resume."""
    a = _probe_folder(tmp_path / "a", [(0.0, 5.0), (5.0, 6.0), (7.0, 8.0)])  # 1 s gaps: evaluation
    b = _probe_folder(tmp_path / "b", [(1.0, 5.5), (6.0, 7.0), (7.0, 8.5)])
    est = gl.estimate_rest([a, b], spent=20.0, probe=3, epochs=200, jobs=2)
    # window [6, 8]: a's [7, 8] (100 images) and none of [5, 6]; b's [6, 7] (100) and [7, 8.5] two
    # thirds (66.7): 266.7 images in 2 s
    assert est["rate_images_per_s"] == pytest.approx(800 / 3 / 2)
    assert est["rate_from"] == "2 runs together over 2.0 s"
    assert est["images_left"] == 2 * 197 * 100.0 and est["waves"] == 1
    assert est["fixed_s"] == pytest.approx(20.0 - 7.0)  # b trained 4.5 + 1 + 1.5 s of the 20
    assert est["estimate_rest_s"] == pytest.approx(13.0 + 39400 / (800 / 6) * 1.15)
    # the folders' order does not matter; a probe shorter than asked for is refused
    assert gl.estimate_rest([b, a], spent=20.0, probe=3, epochs=200, jobs=2) == est
    with pytest.raises(ValueError, match="fewer than 4 epoch records"):
        gl.estimate_rest([a, b], spent=20.0, probe=4, epochs=200, jobs=2)


def test_runs_that_never_trained_at_one_time_are_estimated_as_taking_turns(gl, tmp_path):
    """No common window (the second run started after the first had finished its probe): the estimate
    takes the fastest single epoch's rate for all runs, as if they took turns on the device, instead of
    counting each run's epoch time once (which assumed they would all run at full speed together)."""
    a = _probe_folder(tmp_path / "a", [(0.0, 2.0), (2.0, 3.0), (3.0, 4.0)])
    b = _probe_folder(tmp_path / "b", [(5.0, 7.0), (7.0, 7.5), (7.5, 8.5)])  # its 2nd epoch: 200/s
    est = gl.estimate_rest([a, b], spent=10.0, probe=3, epochs=13, jobs=2)
    assert est["rate_from"] == "the fastest epoch, as if the runs took turns"
    assert est["rate_images_per_s"] == 200.0
    assert est["estimate_rest_s"] == pytest.approx(max(10.0 - 4.0, 0) + 2 * 10 * 100 / 200 * 1.15)


@pytest.mark.slow
def test_probe_then_the_rest_or_a_refusal(gl, tmp_path, capsys):
    data = tmp_path / "fmnist"
    data.mkdir()
    make_fmnist(data, per_class=100, test_per_class=6)
    common = ["--quick", "--data", str(data), "--epochs", "3", "--probe-epochs", "1"]
    assert gl.main([*common, "--out", str(tmp_path / "no"), "--budget-s", "0"]) == 3
    assert "exceed --budget-s 0; the probe's checkpoints stay" in capsys.readouterr().out
    info = json.loads((tmp_path / "no" / "gpu_longtail.json").read_text())["info"]
    assert info["probe"]["epochs"] == 1 and info["probe"]["estimate_rest_s"] > 0
    assert info["mps"] == "MPS: off (one run at a time: nothing to share)"  # --quick: 1 job
    assert gl.main([*common, "--out", str(tmp_path / "yes"), "--budget-s", "1e6"]) == 0
    res = json.loads((tmp_path / "yes" / "gpu_longtail.json").read_text())
    assert len(res["runs"]) == 5 and "estimate_rest_s" in res["info"]["probe"]
    for key in res["runs"]:  # every run resumed after the probe and trained all 3 epochs
        run = tmp_path / "yes" / "runs" / key
        epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [0, 1, 2], key


@pytest.mark.slow
def test_a_failing_run_is_listed_and_the_others_finish(gl, tmp_path, monkeypatch, capsys):
    """A run that raises after the probe is recorded with its error and the other four train on; the
    summaries are written as runs finish, into --summary-dir. A run that fails in the probe stops the
    protocol before the long part."""
    import lpl_train.engine as E

    data, summaries = tmp_path / "fmnist", tmp_path / "summaries"
    data.mkdir()
    make_fmnist(data, per_class=100, test_per_class=6)
    fit, seen = E.fit, []

    def fit_la_fails(cfg, out, **kw):
        seen.append(sorted(p.name for p in summaries.glob("*")) if summaries.exists() else [])
        if cfg["name"].endswith("_la") and (kw["stop_after_epoch"] is None or fail_in_probe):
            raise RuntimeError("training loss became non-finite")
        return fit(cfg, out, **kw)

    monkeypatch.setattr(E, "fit", fit_la_fails)
    common = ["--quick", "--data", str(data), "--epochs", "2", "--probe-epochs", "1"]
    fail_in_probe = False
    args = [*common, "--out", str(tmp_path / "runs"), "--summary-dir", str(summaries)]
    assert gl.main([*args, "--budget-s", "1e6"]) == 1
    res = json.loads((summaries / "gpu_longtail.json").read_text())["runs"]
    assert res["la/seed0"] == {"error": "RuntimeError: training loss became non-finite"}
    assert sorted(k for k, r in res.items() if "final" in r) == [
        "ce/seed0", "la_lpl/seed0", "ldam_drw/seed0", "lpl/seed0"]  # fmt: skip
    table = (summaries / "gpu_longtail.md").read_text()
    assert "| lpl | 1 |" in table and "| la |" not in table
    assert "Failed runs:\n- la/seed0: RuntimeError: training loss became non-finite" in table
    # written as runs finished: there before the last runs began
    assert ["gpu_longtail.json", "gpu_longtail.md"] in seen[6:]
    assert not (tmp_path / "runs" / "gpu_longtail.json").exists()
    fail_in_probe = True
    capsys.readouterr()
    assert gl.main([*common, "--out", str(tmp_path / "probe"), "--budget-s", "1e6"]) == 1
    out = capsys.readouterr().out
    assert "probe: la/seed0 FAILED: RuntimeError" in out and "not started: runs failed" in out
    info = json.loads((tmp_path / "probe" / "gpu_longtail.json").read_text())["info"]
    assert info["probe"]["failed"] == {"la/seed0": "RuntimeError: training loss became non-finite"}


def test_mps_on_without_a_working_mps_is_one_line_before_any_run(gl, tmp_path, monkeypatch, capsys):
    """``--mps on`` where MPS cannot start: an argument error (status 2, one line), as gpu_check reports
    it and lpl-train sweep refuses it, not a traceback with the status of a failed run (1)."""
    import contextlib

    import lpl_train.engine.mps as M

    @contextlib.contextmanager
    def refused(mode, **kw):
        raise M.MPSError("--mps on: nvidia-cuda-mps-control is not on PATH")
        yield

    monkeypatch.setattr(M, "mps_server", refused)
    data = tmp_path / "fmnist"
    data.mkdir()
    with pytest.raises(SystemExit) as exc:
        gl.main(["--quick", "--jobs", "2", "--mps", "on", "--data", str(data), "--out",
                 str(tmp_path / "out")])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert (
        "error: --mps on: nvidia-cuda-mps-control is not on PATH" in err and "Traceback" not in err
    )
    assert not (tmp_path / "out" / "runs").exists()


def test_waves_round_up_and_the_fixed_part_is_never_negative(gl, tmp_path):
    runs = [
        _probe_folder(tmp_path / f"r{i}", [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) for i in range(5)
    ]
    est = gl.estimate_rest(runs, spent=30.0, probe=3, epochs=10, jobs=2)
    assert est["waves"] == 3  # 2 + 2 + 1 runs
    assert est["fixed_s"] == pytest.approx(30.0 / 3 - 3.0)
    # the first wave (2 runs) together: 200 images/s over [1, 3]; 5 runs x 7 epochs x 100 images left
    assert est["rate_images_per_s"] == pytest.approx(200.0)
    assert est["estimate_rest_s"] == pytest.approx(3 * 7.0 + 3500 / 200 * 1.15)
    # a probe whose runs overlapped more than their epochs' sum suggests: no negative fixed part
    est = gl.estimate_rest(runs, spent=2.0, probe=3, epochs=10, jobs=5)
    assert est["fixed_s"] == 0.0 and est["estimate_rest_s"] == pytest.approx(3500 / 500 * 1.15)


def test_the_protocol_is_ldams_schedule_with_each_methods_shipped_loss(gl):
    from lpl_train.config import load_config

    for method in ("ce", "la", "la_lpl"):  # as shipped
        lo = load_config(f"fmnist_lt100_{method}")["loss"]
        assert gl.method_loss(method, 200) == (lo["name"], lo["params"])
    name, p = gl.method_loss("ldam_drw", 200)
    assert name == "ldam" and p["drw_epoch"] == 160 and p["drw_beta"] == 0.9999  # LDAM's DRW
    assert gl.method_loss("ldam_drw", 3)[1]["drw_epoch"] == 2  # a short run still switches
    assert gl.method_loss("ldam_drw", 1)[1]["drw_epoch"] == 0
    name, p = gl.method_loss("lpl", 200)  # the long-tail ablation's best reading
    assert name == "lpl" and p["normalize_step"] is True
    assert (p["delta_epsilon"], p["alpha"], p["split"]) == (2.0, 0.25, "index")
    cfg = gl.Protocol("data", 200, quick=False, device="cpu").config("ldam_drw", 2)
    assert cfg["schedule"]["milestones"] == [160, 180] and cfg["schedule"]["warmup_epochs"] == 5
    assert cfg["schedule"]["factors"] == [0.01, 0.0001] and cfg["schedule"]["epochs"] == 200
    assert (cfg["optim"]["lr"], cfg["optim"]["weight_decay"], cfg["data"]["batch_size"]) == (
        0.1, 2e-4, 128)  # fmt: skip
    assert cfg["model"] == {"name": "resnet32", "params": {"in_channels": 1, "use_norm": True}}
    assert cfg["train"]["seed"] == 2
    assert not gl.Protocol("data", 200, False, "cpu").config("ce", 0)["model"]["params"]["use_norm"]


def test_the_data_is_fashion_mnist_lt_padded_to_32(gl, tmp_path):
    make_fmnist(tmp_path, per_class=100, test_per_class=6)
    train, test, counts = gl.padded_fmnist_lt(str(tmp_path), quick=False)
    assert train.images.shape[1:] == test.images.shape[1:] == (1, 32, 32)
    assert train.images[:, :, :2].eq(0).all() and train.images[:, :, :, -2:].eq(0).all()
    assert counts[0] == 100 and counts[-1] == 1 and sum(counts) == len(train.targets)  # 100:1
    assert len(test.targets) == 60


def test_the_table_gives_mean_and_sample_std_over_seeds(gl):
    fin = [{"top1_error": 10.0, "acc_many": 90.0, "acc_medium": None, "acc_few": 50.0},
           {"top1_error": 12.0, "acc_many": 88.0, "acc_medium": None, "acc_few": 70.0}]  # fmt: skip
    table = gl.summarise({"lpl/seed0": {"final": fin[0]}, "lpl/seed1": {"final": fin[1]},
                          "ce/seed0": {"final": fin[0]}})  # fmt: skip
    assert "| ce | 1 | 10.00 | 90.00 | — | 50.00 |" in table
    assert "| lpl | 2 | 11.00 ± 1.41 | 89.00 ± 1.41 | — | 60.00 ± 14.14 |" in table
    assert table.index("| ce |") < table.index("| lpl |")  # METHODS order


def _fake_clock(gl, monkeypatch, step: float) -> None:
    """``time.perf_counter`` in the script advances ``step`` seconds a call (the probe takes ``step``)."""
    import time
    import types

    ticks = iter(step * i for i in range(1000))
    monkeypatch.setattr(gl, "time", types.SimpleNamespace(
        perf_counter=lambda: next(ticks), strftime=time.strftime, gmtime=time.gmtime))  # fmt: skip


def test_the_budget_counts_the_probes_time_and_the_estimate_together(
    gl, tmp_path, monkeypatch, capsys
):
    """The rest starts only if the probe's wall time plus the estimate of the rest fits --budget-s: a probe
    of 100 s and an estimate of 50 s exceed 120 s (the estimate alone does not) and fit 150 s."""
    import lpl_train.experiment as X

    calls = []

    def execute(runs, runner, jobs, log, describe=None):
        calls.append(runner.protocol.stop_after)
        return []

    monkeypatch.setattr(X, "execute", execute)
    monkeypatch.setattr(gl, "estimate_rest", lambda *a, **k: {
        "rate_images_per_s": 1.0, "rate_from": "a stand-in", "fixed_s": 0.0, "waves": 1,
        "estimate_rest_s": 50.0})  # fmt: skip
    _fake_clock(gl, monkeypatch, 100.0)
    common = ["--quick", "--data", str(tmp_path), "--epochs", "3", "--probe-epochs", "1"]
    assert gl.main([*common, "--out", str(tmp_path / "no"), "--budget-s", "120"]) == 3
    assert (
        "the probe's 100 s and the estimate 50 s exceed --budget-s 120" in capsys.readouterr().out
    )
    assert calls == [1]  # the probe only
    calls.clear()
    _fake_clock(gl, monkeypatch, 100.0)
    gl.main([*common, "--out", str(tmp_path / "yes"), "--budget-s", "150"])
    assert calls == [1, None]  # the probe, then the rest


def test_a_call_stopped_after_the_probe_keeps_the_probe_and_the_included_runs(
    gl, tmp_path, monkeypatch
):
    """The summaries are written once the probe has decided, before the rest starts: a call stopped while
    the rest trains (gpu_device_run.sh's timeout; no run finished yet) still leaves the probe's figures and
    the runs of ``--include`` in --summary-dir."""
    import lpl_train.experiment as X

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"info": {"epochs": 3, "quick": True},
                                   "runs": {"ce/seed0": {"final": {"top1_error": 10.0}}}}))  # fmt: skip

    def execute(runs, runner, jobs, log, describe=None):
        if runner.protocol.stop_after is None:  # the rest: stopped (SIGTERM under the MPS context)
            raise SystemExit(143)
        return []

    monkeypatch.setattr(X, "execute", execute)
    monkeypatch.setattr(gl, "estimate_rest", lambda *a, **k: {
        "rate_images_per_s": 1.0, "rate_from": "a stand-in", "fixed_s": 0.0, "waves": 1,
        "estimate_rest_s": 50.0})  # fmt: skip
    summaries = tmp_path / "summaries"
    args = ["--quick", "--data", str(tmp_path), "--epochs", "3", "--probe-epochs", "1", "--out",
            str(tmp_path / "runs"), "--summary-dir", str(summaries), "--budget-s", "1e6",
            "--first-seed", "1", "--include", str(earlier)]  # fmt: skip
    with pytest.raises(SystemExit):
        gl.main(args)
    res = json.loads((summaries / "gpu_longtail.json").read_text())
    assert res["info"]["probe"]["estimate_rest_s"] == 50.0 and list(res["runs"]) == ["ce/seed0"]
    assert "in progress" in (summaries / "gpu_longtail.md").read_text()


def test_runs_finished_by_an_earlier_call_are_in_the_summary(gl, tmp_path, monkeypatch):
    """A run already finished (read back by the executor, which calls no ``describe`` for it) still counts:
    it is in the table and the JSON, and all finished means exit status 0."""
    import lpl_train.experiment as X

    fin = {"top1_error": 10.0, "acc_many": 90.0, "acc_medium": 80.0, "acc_few": 50.0}

    def execute(runs, runner, jobs, log, describe=None):
        return [X.Outcome(r, "done", {"final": dict(fin)}) for r in runs]

    monkeypatch.setattr(X, "execute", execute)
    out = tmp_path / "o"
    assert gl.main(["--quick", "--data", str(tmp_path), "--epochs", "1", "--out", str(out)]) == 0
    res = json.loads((out / "gpu_longtail.json").read_text())["runs"]
    assert sorted(res) == [f"{m}/seed0" for m in sorted(gl.METHODS)]
    table = (out / "gpu_longtail.md").read_text()
    for m in gl.METHODS:
        assert f"| {m} | 1 | 10.00 | 90.00 | 80.00 | 50.00 |" in table


def test_the_runs_go_five_at_a_time_by_default(gl, tmp_path, monkeypatch):
    """On the GPU the 15 runs train 5 at a time (5 at once outran 15 at once on the H200), whatever the
    host's cores; --jobs sets it."""
    import torch

    import lpl_train.experiment as X

    seen = []

    def execute(runs, runner, jobs, log, describe=None):
        seen.append((len(runs), jobs))
        return []

    monkeypatch.setattr(X, "execute", execute)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a stand-in GPU")
    monkeypatch.setattr(gl.os, "cpu_count", lambda: 16)
    common = ["--data", str(tmp_path), "--epochs", "1"]  # one epoch: no probe
    gl.main([*common, "--out", str(tmp_path / "a")])
    gl.main([*common, "--out", str(tmp_path / "b"), "--jobs", "15"])
    gl.main([*common, "--out", str(tmp_path / "c"), "--seeds", "1"])
    monkeypatch.setattr(gl.os, "cpu_count", lambda: 4)
    gl.main([*common, "--out", str(tmp_path / "d")])
    assert seen == [(15, 5), (15, 15), (5, 5), (15, 3)]


def test_seeds_spread_over_calls_join_in_one_table(gl, tmp_path, monkeypatch, capsys):
    """``--first-seed 1`` trains seed 1 only (seed0's folders untouched), and ``--include`` puts an earlier
    call's finished runs into this call's JSON and table (mean ± sample std over both seeds); a run that
    an included file already holds, a file that is not a summary or of another protocol, and bad seed
    counts are refused."""
    import lpl_train.experiment as X

    trained = []

    def execute(runs, runner, jobs, log, describe=None):
        seed = {"seed0": 10.0, "seed1": 12.0}
        out = []
        for r in runs:
            trained.append((r.key, r.cfg["train"]["seed"], r.out.name))
            fin = {"top1_error": seed[r.key.split("/")[1]], "acc_many": 90.0, "acc_medium": 80.0,
                   "acc_few": None}  # fmt: skip
            out.append(X.Outcome(r, "done", {"final": fin}))
            if describe:
                describe(out[-1])
        return out

    monkeypatch.setattr(X, "execute", execute)
    common = ["--quick", "--data", str(tmp_path), "--epochs", "1"]
    assert gl.main([*common, "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "gpu_longtail.json"
    trained.clear()
    args = [*common, "--out", str(tmp_path / "b"), "--first-seed", "1", "--include", str(first)]
    assert gl.main(args) == 0
    assert sorted(trained) == sorted((f"{m}/seed1", 1, "seed1") for m in gl.METHODS)
    both = json.loads((tmp_path / "b" / "gpu_longtail.json").read_text())
    assert sorted(both["runs"]) == sorted(f"{m}/seed{s}" for m in gl.METHODS for s in (0, 1))
    assert both["info"]["included"] == [str(first)]
    table = (tmp_path / "b" / "gpu_longtail.md").read_text()
    for m in gl.METHODS:  # errors 10 and 12: mean 11, sample std sqrt(2)
        assert f"| {m} | 2 | 11.00 ± 1.41 | 90.00 ± 0.00 | 80.00 ± 0.00 | — |" in table
    (tmp_path / "bad.json").write_text("{}")
    for bad, why in (
        (["--include", str(first)], "already holds ce/seed0"),  # seed 0 again
        (["--first-seed", "2", "--include", str(first), "--include", str(first)],
         "ce/seed0 is in more than one"),
        (["--include", str(tmp_path / "bad.json")], "not a gpu_longtail.json"),
        (["--first-seed", "2", "--epochs", "2", "--include", str(first)], "not the same protocol"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--first-seed", "-1"], "--first-seed at least 0"),
    ):  # fmt: skip
        capsys.readouterr()
        with pytest.raises(SystemExit):
            gl.main([*common, "--out", str(tmp_path / "c"), *bad])
        assert why in capsys.readouterr().err


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "2026-11-29-h200"


def test_the_readme_s_gpu_table_is_the_committed_records():
    """The README's long-tail table on the H200 reads the committed run records (each run's final.json,
    which the summary holds too): the errors and group accuracies, to 2 decimals, in the methods' order;
    every run trained the protocol's 200 epochs on CUDA."""
    summary = json.loads((RESULTS / "gpu_longtail.json").read_text(encoding="utf-8"))
    assert summary["info"]["epochs"] == 200 and summary["info"]["device"] == "NVIDIA H200"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The paper's long-tail protocol on a GPU") :]
    rows = [
        r for r in section.split("\n## ")[0].splitlines() if r.startswith("| ") and "---" not in r
    ]
    assert len(rows) == 6  # the header and five methods
    for row, method in zip(rows[1:], ("ce", "la", "ldam_drw", "lpl", "la_lpl"), strict=True):
        run = json.loads(
            (RESULTS / "longtail-runs" / method / "seed0" / "final.json").read_text(
                encoding="utf-8"
            )
        )
        assert run == summary["runs"][f"{method}/seed0"]
        assert run["run"]["epochs_run"] == 200 and run["run"]["device"].startswith("cuda")
        f = run["final"]
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")[1:]]
        assert cells == [f"{f['top1_error']:.2f}", f"{f['acc_many']:.2f}", f"{f['acc_medium']:.2f}"]
        assert f["acc_few"] is None  # no class below 20 images at 100:1 with 6000 in the head
