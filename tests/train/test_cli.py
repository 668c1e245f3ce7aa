"""The ``lpl-train`` command line: list, run (dry-run, errors, resume), sweep, report, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lpl_train.__main__ import main
from lpl_train.config import dumps_toml, list_configs, load_config
from lpl_train.engine import load_checkpoint, read_metrics
from lpl_train.engine.lock import _Lock
from tests.train.test_data_images import _coco

torch.set_flush_denormal(True)

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def gaussian_config(tmp_path: Path, epochs: int = 2) -> Path:
    """A seconds-long real run: the Sec. III.B Gaussian data is generated, nothing to download."""
    cfg = load_config(
        "gaussian_linear_lpl",
        [
            "data.params.num_train=400",
            "data.params.num_test=400",
            "data.batch_size=100",
            "train.device='cpu'",
            "train.progress=false",
        ],  # fmt: skip
        epochs=epochs,
    )
    path = tmp_path / "g.toml"
    path.write_text(dumps_toml(cfg))
    return path


def test_list_names_every_config_and_its_paper_cell(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tiv_cifar10_lt100_la " in out and "Table IV: LA / 100:1" in out
    assert "fmnist_lt100_lpl" in out and "CPU-scale" in out
    assert [line.split()[0] for line in out.splitlines()] == list_configs()  # one line per config


def test_errors_are_one_line_with_exit_status_2(capsys, tmp_path):
    assert main(["run", "fmnist_lt100_lpl", "--set", "optim.lrr=1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "lpl-train: error: unknown config key 'optim.lrr'"
    )
    assert main(["run", "no_such_config"]) == 2
    assert "no config named 'no_such_config'" in capsys.readouterr().err
    assert main(["run", "fmnist_lt100_lpl", "--set", "schedule.epochs=two"]) == 2
    assert "'schedule.epochs' has value 'two'" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert main(["sweep", "fmnist_lt100_lpl", "--grid", "optim.lr"]) == 2
    assert "must look like key=v1,v2" in capsys.readouterr().err


def test_dry_run_names_the_missing_data_path(capsys, tmp_path):
    rc = main(
        ["run", "tiv_cifar10_lt100_ldam_drw", "--dry-run", "--set", f"data.root='{tmp_path}'"]
    )
    out, err = capsys.readouterr()
    assert rc == 2
    assert "model resnet32 (0.464M parameters, 10 classes) and loss ldam (LDAMLoss) build" in out
    assert "data MISSING" in out
    assert err.count("\n") == 1 and str(tmp_path) in err and "cifar-10-python.tar.gz" in err


def test_table_x_dry_run_reports_missing_coco_and_weights(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's relative weights path resolves here (absent)
    rc = main(["run", "tx_coco_rbce_lpl_varied", "--dry-run", "--set", f"data.root='{tmp_path}'"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "model resnet101 (43.046M parameters, 80 classes) and loss ml_lpl" in out
    assert "data and model weights MISSING" in out and err.count("\n") == 1
    for part in (f"{tmp_path}/annotations/instances_train2014.json", "instances_val2014.json",
                 "cocodataset.org", "resnet101-imagenet.pth"):  # fmt: skip
        assert part in err, (part, err)
    # with the (tiny) COCO-2014 files present, only the ImageNet weights are reported missing (the
    # files hold fewer images than one batch: kept with drop_last = false, else no batch would be left)
    _coco(tmp_path, 2014)
    sets = ["--set", f"data.root='{tmp_path}'", "--set", "data.drop_last=false"]
    assert main(["run", "tx_coco_rbce_ntr", "--dry-run", *sets]) == 2
    out, err = capsys.readouterr()
    assert (
        "parameters, 3 classes)" in out
        and "loss rbce_ntr (RBCENTRLoss) build; model weights MISSING" in out
    )
    assert "resnet101-imagenet.pth" in err and "instances" not in err


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST idx files not installed")
def test_dry_run_confirms_present_data(capsys):
    assert main(["run", "fmnist_lt100_lpl", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "data fmnist_lt ok (14886 train / 10000 test)" in out and "loss lpl (LPLLoss) build" in out
    )


@pytest.mark.parametrize("more", [["--dry-run"], ["--epochs", "1", "--quiet"]])
def test_a_builds_warning_is_one_lpl_train_line_not_pythons(tmp_path, capsys, more):
    out = str(tmp_path / "r")
    assert (
        main(["run", "gaussian_linear_lpl", "--set", "loss.params.tau=1.0", "--out", out, *more])
        == 0
    )
    err = capsys.readouterr().err
    assert err.startswith("lpl-train: warning: tau=1.0 puts every class in the head"), err
    assert "UserWarning" not in err and ".py:" not in err


def test_a_builds_warning_is_one_line_in_the_workers_of_a_sweep_too(tmp_path, capfd):
    """``--jobs 2`` builds each run's loss in a worker process, which printed the warning in Python's form."""
    cfg = gaussian_config(tmp_path, epochs=1)
    argv = ["sweep", str(cfg), "--seeds", "2", "--quiet", "--jobs", "2", "--out", str(tmp_path / "s"),
            "--set", "loss.params.tau=1.0"]  # fmt: skip
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "lpl-train: warning: tau=1.0 puts every class in the head" in err, err
    assert "UserWarning" not in err and ".py:" not in err, err


def test_a_losss_warning_named_at_the_line_outside_the_package_is_still_one_line(capsys, recwarn):
    """A loss's warnings name the line outside the package that built or called it (here this test's; under
    the command line a frame of runpy or of the console script), so the file a warning names no longer
    says whose it is: those the package's code raised are one line, others as Python prints them."""
    import warnings

    from lpl_train._warning_lines import one_line_warnings
    from lpl_train.losses import build_loss

    u, y = torch.randn(8, 4) * 3, torch.arange(8) % 4
    with warnings.catch_warnings(), one_line_warnings():
        warnings.simplefilter("always")
        loss = build_loss("ldam", class_counts=[40, 20, 10, 5], drw_epoch=1)  # no set_epoch
        loss(u, y)
        warnings.warn("not the package's", UserWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err  # the other went to Python's showwarning, which recwarn records
    assert [str(w.message) for w in recwarn] == ["not the package's"]
    assert err[0].startswith("lpl-train: warning: ldam: drw_epoch=1 is set"), err
    assert err[1].startswith("lpl-train: warning: ldam expects cosine logits"), err


def test_dry_run_checks_the_run_folder_as_the_run_would_without_writing(
    tmp_path, capsys, monkeypatch
):
    done = tmp_path / "g1"
    assert main(["run", "gaussian_linear_ce", "--epochs", "1", "--out", str(done), "--quiet"]) == 0
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()

    def dry(out, *more):
        rc = main(
            ["run", "gaussian_linear_ce", "--epochs", "1", "--out", str(out), "--dry-run", *more]
        )
        got = capsys.readouterr()
        return rc, got.out + got.err

    rc, text = dry(tmp_path / "fresh")
    assert rc == 0 and f"run folder {tmp_path / 'fresh'}: would start a fresh run" in text
    rc, text = dry(done, "--resume")
    assert rc == 0 and "finished; --resume would train nothing" in text
    for out, more, refusal in (
        (done, (), "holds a finished run (final.json)"),
        (done / "sub", (), f"lies inside the run folder {str(done.resolve())!r}"),
        (tmp_path, (), "holds another run in"),
        (tmp_path / "fresh", ("--resume",), "no checkpoint"),
        (done, ("--resume", "--set", "optim.lr=0.5"), "optim.lr (0.1 → 0.5)"),
    ):
        rc, text = dry(out, *more)
        assert rc == 2 and refusal in text and text.startswith("lpl-train: error:"), (out, text)
    with monkeypatch.context() as m:  # the package missing: import of it fails
        m.setitem(sys.modules, "torch.utils.tensorboard", None)
        rc, text = dry(tmp_path / "tb", "--set", "train.tensorboard=true")
        assert rc == 2 and "needs the tensorboard package" in text
    with monkeypatch.context() as m:
        flags = os.statvfs(tmp_path)
        m.setattr(os, "statvfs", lambda p: type("S", (), {"f_flag": flags.f_flag | os.ST_RDONLY})())
        rc, text = dry(tmp_path / "ro")
        assert rc == 2 and "cannot write run folder" in text and "Read-only file system" in text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    # a finished run whose checkpoint is damaged: the run notes it and trains nothing, and so does this
    ckpt = done / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    rc, text = dry(done, "--resume")
    assert rc == 0 and "finished; --resume would train nothing (--resume: checkpoint" in text
    assert "result (final.json) is intact" in text


def test_dry_run_of_a_resume_refuses_another_number_of_processes(tmp_path, capsys, monkeypatch):
    """The run refuses to resume a checkpoint written on another number of processes; its dry run said
    "would resume" (under torchrun too), as if that resume would start."""
    out = tmp_path / "g"
    assert main(["run", "gaussian_linear_ce", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    (out / "final.json").unlink()  # an unfinished run, its checkpoint written by one process
    argv = ["run", "gaussian_linear_ce", "--epochs", "1", "--out", str(out), "--resume",
            "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    assert "would resume after epoch 1" in capsys.readouterr().out
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "lpl-train: error (rank 1): --resume: the checkpoint was written by a run on 1 "
    )
    assert "this one has 2" in err
    monkeypatch.setenv("WORLD_SIZE", "1")
    ck = load_checkpoint(out / "checkpoint.pt")
    torch.save({**ck, "world_size": 2}, out / "checkpoint.pt")  # as 2 processes write it
    assert main(argv) == 2
    assert "written by a run on 2 process(es), this one has 1" in capsys.readouterr().err


def test_run_writes_a_complete_folder_and_resume_of_a_finished_run_changes_nothing(
    tmp_path, capsys
):
    cfg = gaussian_config(tmp_path)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
        "classes.json",
        "config.toml",
        "final.json",
        "metrics.csv",
        "metrics.jsonl",
        "train.log",
    ]
    recs = read_metrics(out)
    assert [r["epoch"] for r in recs] == [0, 1]
    lv = recs[0]["loss_variation"]
    # measured on every 10th step of an epoch from its first (the default): 4 steps of 100 -> step 0 only
    assert len(lv["relative_variation"]) == 2 and sum(lv["count"]) == 100
    final = json.loads((out / "final.json").read_text())
    assert final["final"]["top1_error"] == recs[-1]["test_top1_error"] and final["epochs"] == 2
    before = load_checkpoint(out / "checkpoint.pt")["model"]
    assert main(["run", str(cfg), "--out", str(out)]) == 2  # no silent overwrite
    assert (
        "finished run (final.json); a finished run is never overwritten" in capsys.readouterr().err
    )
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 0
    after = load_checkpoint(out / "checkpoint.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(read_metrics(out)) == 2
    assert json.loads((out / "final.json").read_text())["final"] == final["final"]


def test_sweep_one_folder_per_point_skips_finished_and_locked_then_reports(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=1)
    root = tmp_path / "sw"
    args = [
        "sweep",
        str(cfg),
        "--grid",
        "optim.lr=0.1,0.05",
        "--seeds",
        "2",
        "--out",
        str(root),
        "--quiet",
    ]
    (root / "optim.lr=0.05" / "seed1").mkdir(parents=True)
    held = _Lock(root / "optim.lr=0.05" / "seed1" / "RUNNING")  # as another process would hold it
    held.acquire()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 runs, 3 trained now, 1 locked" in out
    done = sorted(str(p.parent.relative_to(root)) for p in root.rglob("final.json"))
    assert done == ["optim.lr=0.05/seed0", "optim.lr=0.1/seed0", "optim.lr=0.1/seed1"]
    seeds = {load_config(root / d / "config.toml")["train"]["seed"] for d in done}
    assert seeds == {0, 1}
    held.release()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("skip (finished)") == 3 and "1 trained now" in out
    assert main(["report", str(root), "--write"]) == 0
    md = capsys.readouterr().out
    assert "gaussian_linear_lpl [optim.lr=0.05] | — | 2 | top1_error" in md
    assert "gaussian_linear_lpl [optim.lr=0.1] | — | 2 | top1_error" in md
    assert (root / "report.md").read_text() == md
    assert main(["report", str(root), "--format", "csv", "--write"]) == 0
    csv = capsys.readouterr().out
    assert (
        csv.startswith("config,table,row,column,n_seeds,")
        and "gaussian_linear_lpl [optim.lr=0.1]" in csv
    )
    assert (root / "report.csv").read_text() == csv and (root / "report.md").read_text() == md
    assert main(["report", str(root), "--groups", "ranks"]) == 0
    assert "groups: the 30% most frequent training classes (many/head)" in capsys.readouterr().out


def test_a_sweep_called_again_with_another_config_is_refused_not_read_back(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=1)
    args = ["sweep", str(cfg), "--seeds", "1", "--out", str(tmp_path / "sw"), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--set", "optim.lr=0.9", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run of another config" in err
    assert "optim.lr" in err and "schedule.epochs" in err
    assert (
        main(args) == 0 and "skip (finished)" in capsys.readouterr().out
    )  # the same config: read back


def test_a_finished_runs_config_toml_edited_by_hand_passes_no_result_off_as_another_configs(
    tmp_path, capsys
):
    """A finished run's ``config.toml`` rewritten to another config: a sweep of that config does not
    read the result back as its own, and ``report`` does not group it under that config. Both go by the
    config ``final.json`` keeps, the one the result was trained with."""
    cfg = gaussian_config(tmp_path, epochs=1)
    root = tmp_path / "sw"
    args = ["sweep", str(cfg), "--seeds", "1", "--out", str(root), "--quiet"]
    assert main(args) == 0
    (stored,) = root.rglob("config.toml")
    original = stored.read_text()
    stored.write_text(original.replace("lr = 0.1", "lr = 0.9"))
    capsys.readouterr()
    assert main([*args, "--set", "optim.lr=0.9"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run of another config" in err and "optim.lr (0.1 → 0.9)" in err
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert "is not the config its run was trained with" in err and "optim.lr (0.1 → 0.9)" in err
    stored.write_text(original)
    assert main(["report", str(root)]) == 0 and "lr" not in capsys.readouterr().err


def test_sweep_keep_going_reports_a_failed_run_trains_the_others_and_the_same_command_retries_it(
    tmp_path, capsys, monkeypatch
):
    import lpl_train.engine as E

    cfg = gaussian_config(tmp_path, epochs=1)
    root = tmp_path / "sw"
    args = ["sweep", str(cfg), "--grid", "optim.lr=0.05,0.1", "--out", str(root), "--quiet"]
    real = E.fit

    def fails_at_lr_005(c, out, **kw):
        if c["optim"]["lr"] == 0.05:
            out.mkdir(parents=True, exist_ok=True)
            raise RuntimeError("CUDA out of memory")
        return real(c, out, **kw)

    monkeypatch.setattr(E, "fit", fails_at_lr_005)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # without --keep-going it stops
        main(args)
    assert not (root / "optim.lr=0.1" / "seed0" / "final.json").exists()
    assert main([*args, "--keep-going"]) == 1
    cap = capsys.readouterr()
    assert "FAILED (RuntimeError: CUDA out of memory)" in cap.out and ", 1 failed" in cap.out
    failed = root / "optim.lr=0.05" / "seed0"
    assert (
        f"optim.lr=0.05/seed0 failed: RuntimeError: CUDA out of memory; traceback in "
        f"{failed / 'train.log'}"
        in cap.err
        and "the same command retries the failed runs" in cap.err
    )
    assert (root / "optim.lr=0.1" / "seed0" / "final.json").is_file()
    assert "Traceback" in (failed / "train.log").read_text()
    monkeypatch.setattr(E, "fit", real)
    assert main([*args, "--keep-going"]) == 0  # the failed run trains now, the other is read back
    assert (failed / "final.json").is_file() and "skip (finished)" in capsys.readouterr().out


def test_a_diverging_sweep_run_is_reported_and_the_others_train(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=1)
    root = tmp_path / "sw"
    args = ["sweep", str(cfg), "--grid", "optim.lr=1e38,0.1", "--seeds", "1", "--out", str(root),
            "--quiet"]  # fmt: skip
    assert main(args) == 1
    cap = capsys.readouterr()
    assert "optim.lr=1e_38/seed0: DIVERGED (" in cap.out and "1 trained now" in cap.out
    assert "1 diverged" in cap.out and "optim.lr=1e_38/seed0 diverged: " in cap.err
    assert (root / "optim.lr=0.1" / "seed0" / "final.json").is_file()
    assert not (root / "optim.lr=1e_38" / "seed0" / "final.json").exists()
    # the report names the diverged run in its row (from diverged.json) instead of leaving it out
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "optim.lr=1e+38] | — | 0 (seed 0 diverged) |" in out, out
    assert "optim.lr=0.1] | — | 1 |" in out


def test_console_script_and_module_entry_point():
    r = subprocess.run(
        [sys.executable, "-m", "lpl_train", "list"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "fmnist_lt100_ce" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "lpl_train", "run", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.startswith("lpl-train: error:")


@pytest.mark.slow
def test_gpu_check_script_runs_shortened_on_cpu(tmp_path):
    """The shell wrapper of the device check in its shortened mode, on a tiny CIFAR-format network
    (tests/train/test_capture.py checks the rows it measures)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "GPU_CHECK_QUICK": "1", "PYTHON": sys.executable}
    args = [
        "--models",
        "fmnist_cnn",
        "--model-params",
        '{"in_channels": 3, "width": 2}',
        "--jobs",
        "1",
    ]
    r = subprocess.run(["bash", str(script), str(tmp_path), *args], capture_output=True, text=True,
                       env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["info"]["quick"] is True and res["info"]["n_train"] == 32
    assert "| fmnist_cnn | lpl engine graph | eager |" in (tmp_path / "gpu_check.md").read_text()
    assert "| fmnist_cnn | LPL/CE step time (graph) |" in r.stdout


def test_gpu_wrappers_take_flags_without_an_output_folder():
    """``benchmarks/gpu_check.sh --help`` and ``gpu_longtail.sh --help``: a first argument that is a flag is
    passed on (the output folder then takes its default), not taken as the folder's name."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHON": sys.executable}
    for name in ("gpu_check", "gpu_longtail"):
        r = subprocess.run(["bash", str(root / "benchmarks" / f"{name}.sh"), "--help"],
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.startswith(f"usage: {name}.py"), r.stdout[:200]
        assert not (root / "--help").exists()


@pytest.mark.slow
def test_gpu_device_run_script_runs_shortened_on_cpu(tmp_path):
    """The one script a GPU session runs (benchmarks/gpu_device_run.sh: the CUDA-only tests, the device check,
    then the long-tail protocol in the time left), shortened, on tiny Fashion-MNIST files in the idx format: every summary
    lands in OUT, and the protocol trains and reports each of its five methods."""
    from tests.train.test_data_fmnist import make_fmnist

    data, out, scratch = tmp_path / "fmnist", tmp_path / "out", tmp_path / "scratch"
    data.mkdir()
    scratch.mkdir()
    make_fmnist(data, per_class=100, test_per_class=6)  # 100:1 keeps a sample of each class
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_device_run.sh"
    env = {
        **os.environ,
        "TMPDIR": str(scratch),  # where its scratch folder goes: removed again in the shortened run
        "GPU_CHECK_QUICK": "1",
        "GPU_LONGTAIL_QUICK": "1",
        "LPL_LONGTAIL_DATA": str(data),
        "LIMIT_S": "400",
        "PYTHON": sys.executable,
        "GPU_LONGTAIL_ARGS": "--first-seed 2",  # passed on to gpu_longtail
    }
    r = subprocess.run(["bash", str(script), str(out)], capture_output=True, text=True, env=env,
                       timeout=400)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    runs = json.loads((out / "gpu_longtail.json").read_text())["runs"]
    assert sorted(runs) == sorted(f"{m}/seed2" for m in ("ce", "la", "ldam_drw", "lpl", "la_lpl"))
    names = {"cuda_tests.log", "gpu_check.json", "gpu_check.md", "gpu_check.log", "gpu_longtail.json",
             "gpu_longtail.md", "gpu_longtail.log"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}, sorted(p.name for p in out.iterdir())
    table = (out / "gpu_longtail.md").read_text()
    for method in ("ce", "la", "ldam_drw", "lpl", "la_lpl"):
        assert f"| {method} | 1 |" in table, table
    assert "the long-tail protocol may take" in r.stdout
    assert "CUDA tests exit 0, gpu_check exit 0, gpu_longtail exit 0" in r.stdout
    assert "10 skipped" in (out / "cuda_tests.log").read_text()  # they need a GPU
    assert not any(p.name.startswith("tmp.") for p in scratch.iterdir()), list(scratch.iterdir())
    # a part that fails makes the whole script fail, and the other part's summaries are still kept
    make_fmnist(
        data, per_class=60, test_per_class=6
    )  # 100:1 leaves a class empty: the protocol stops
    out2 = tmp_path / "out2"
    env["GPU_CHECK_ARGS"] = "--jobs 1"  # passed on to gpu_check
    r = subprocess.run(["bash", str(script), str(out2)], capture_output=True, text=True, env=env,
                       timeout=400)  # fmt: skip
    assert r.returncode != 0 and "gpu_longtail exit 1" in r.stdout, r.stdout[-2000:]
    assert {"gpu_check.json", "gpu_check.md"} <= {p.name for p in out2.iterdir()}
    assert "lpl graph x1" in (out2 / "gpu_check.md").read_text()
    # too little time left for the protocol: it is left out (not even its probe runs). The check is left
    # out here, so that what is left does not depend on how long the check took on a loaded machine
    env.update(LIMIT_S="60", GPU_CHECK_ARGS="", GPU_DEVICE_PARTS="tests,longtail")
    out3 = tmp_path / "out3"
    r = subprocess.run(["bash", str(script), str(out3)], capture_output=True, text=True, env=env,
                       timeout=400)  # fmt: skip
    assert r.returncode == 0 and "under 60 s: not started" in r.stdout, r.stdout[-2000:]
    assert not (out3 / "gpu_longtail.json").exists() and (out3 / "cuda_tests.log").is_file()
    del env["GPU_DEVICE_PARTS"]
    # a check that would overrun LIMIT_S is stopped 10 s before it; its log is kept
    env.update(LIMIT_S="40", GPU_CHECK_ARGS="--repeats 50")
    out4 = tmp_path / "out4"
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(script), str(out4)], capture_output=True, text=True, env=env,
                       timeout=400)  # fmt: skip
    assert time.monotonic() - t0 < 40, r.stdout[-2000:]
    assert r.returncode != 0, r.stdout[-2000:]
    assert "gpu_check exit 124 (stopped: it overran LIMIT_S)" in r.stdout, r.stdout[-2000:]
    assert (out4 / "gpu_check.log").is_file() and (out4 / "cuda_tests.log").is_file()
    assert not (out4 / "gpu_check.json").exists() and not (out4 / "gpu_longtail.json").exists()
    # GPU_DEVICE_PARTS: only the parts named run (e.g. the check alone, in a call of its own)
    env.update(LIMIT_S="400", GPU_CHECK_ARGS="", GPU_DEVICE_PARTS="check")
    out5 = tmp_path / "out5"
    r = subprocess.run(["bash", str(script), str(out5)], capture_output=True, text=True, env=env,
                       timeout=400)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:]
    said = "# gpu_device_run: CUDA tests left out, gpu_check exit 0, gpu_longtail left out"
    assert said in r.stdout, r.stdout[-2000:]
    assert {p.name for p in out5.iterdir()} == {f"gpu_check.{x}" for x in ("json", "log", "md")}
    env["GPU_DEVICE_PARTS"] = "tests,gpu"
    r = subprocess.run(["bash", str(script), str(tmp_path / "out6")], capture_output=True, text=True,
                       env=env, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "unknown part 'gpu' (tests, check, longtail)" in r.stderr, r.stderr
    assert not (tmp_path / "out6").exists()


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST idx files not installed")
def test_end_to_end_fmnist_lt100_lpl_trains_on_real_data(tmp_path, capsys):
    out = tmp_path / "fm"
    # one epoch of the shipped config with a narrower net and larger batches, to keep the test short
    rc = main(["run", "fmnist_lt100_lpl", "--epochs", "1", "--set", "model.params.width=4", "--set",
               "data.batch_size=512", "--set", "train.device='cpu'", "--set", "train.loss_variation_every=1",
               "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    (rec,) = read_metrics(out)
    assert rec["epoch"] == 0 and len(rec["test_per_class_acc"]) == 10
    assert rec["test_top1_error"] < 90.0  # better than chance after one epoch
    lv = rec["loss_variation"]
    assert lv["count"] == [
        6000,
        3596,
        2156,
        1292,
        774,
        464,
        278,
        166,
        100,
        60,
    ]  # the LT profile, ρ = 100
    # LPL's index split: head classes are minimised (l' < l), tail classes maximised (l' > l)
    assert lv["relative_variation"][0] < 0 < lv["relative_variation"][-1]
    final = json.loads((out / "final.json").read_text())
    assert final["class_counts"] == lv["count"]


def test_run_warns_when_epochs_cut_off_drw_milestones_and_warmup(capsys, tmp_path):
    argv = ["run", "tiv_cifar10_lt100_ldam_drw", "--dry-run", "--set", f"data.root='{tmp_path}'"]
    assert main([*argv, "--epochs", "2"]) == 2  # data missing, but the warnings come first
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [
        "lpl-train: warning: tiv_cifar10_lt100_ldam_drw: loss.params.drw_epoch=160 >= "
        "schedule.epochs=2: DRW re-weighting never switches on in this run",
        "lpl-train: warning: tiv_cifar10_lt100_ldam_drw: schedule.milestones [160, 180] are at or "
        "past schedule.epochs=2: those lr steps never happen in this run",
        "lpl-train: warning: tiv_cifar10_lt100_ldam_drw: schedule.warmup_epochs=5 > "
        "schedule.epochs=2: the run ends inside the warm-up",
    ]
    assert err[3].startswith("lpl-train: error: CIFAR-10 not found") and len(err) == 4
    assert main([*argv, "--epochs", "170"]) == 2  # DRW (160) happens, milestone 180 does not
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "milestones [180]" in err[0] and "drw_epoch" not in err[0]
    assert main(argv) == 2  # the shipped recipe: no warning
    assert capsys.readouterr().err.count("warning") == 0


def test_missing_weights_message_names_the_absolute_path_and_how_to_make_the_file(tmp_path):
    from lpl_train.models import build_model

    with pytest.raises(FileNotFoundError) as exc:
        build_model("resnet101", 5, weights=str(tmp_path / "w.pth"))
    msg = str(exc.value)
    assert f"tried: {tmp_path / 'w.pth'}" in msg
    assert "torchvision.models.resnet101(weights='IMAGENET1K_V1').state_dict()" in msg


def test_list_takes_filter_words(capsys):
    assert main(["list", "IV", "la"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names and all(n.startswith("tiv_") and "_la" in n for n in names)
    assert main(["list", "fmnist_ml_lt"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["fmnist_ml_lt100_bce", "fmnist_ml_lt100_ml_lpl"]
    assert main(["list", "no-such-word"]) == 0 and capsys.readouterr().out == ""


def test_list_takes_a_table_numeral_as_that_table_only(capsys):
    # III is a substring of VIII (and of the names tviii_...), I and V of most numerals
    for numeral in ("I", "II", "III", "V", "VI", "VIII", "X"):
        assert main(["list", numeral]) == 0
        tables = {line.split()[2] for line in capsys.readouterr().out.splitlines()}
        assert tables == {f"{numeral}:"}, (numeral, tables)


def test_list_into_a_closed_pipe_has_no_traceback():
    import os

    # buffered output, as for a user (PYTHONUNBUFFERED hides the case: each print then fails in the
    # command, not in the last flush at the interpreter's exit)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r = subprocess.run(f"{sys.executable} -m lpl_train list | head -n 1", shell=True, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.stdout.count("\n") == 1 and r.stderr == ""
    for cmd in (["list"], ["report", "--help"]):  # the reader gone before the first write
        proc = subprocess.Popen([sys.executable, "-m", "lpl_train", *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True)  # fmt: skip
        proc.stdout.close()
        assert (proc.stderr.read(), proc.wait(timeout=60)) == ("", 0), cmd


@pytest.mark.parametrize("how", ["run", "sweep --jobs 2"])
def test_runs_train_to_their_end_when_the_reader_of_stdout_goes_away(tmp_path, how):
    """`lpl-train run ... | head`: the epoch lines (and a sweep's) met a closed pipe, the BrokenPipeError
    stopped the training, and the command exited 0 with no run finished. The runs now go on to their end;
    their lines stay in their train.log."""
    out = tmp_path / "out"
    cmd, *extra = how.split()
    # each print reaches the pipe at once, in the training (buffered, it failed once 8 KiB had been said)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lpl_train", cmd, str(gaussian_config(tmp_path)),
                             "--out", str(out), *extra, *(["--seeds", "2"] if extra else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                            text=True)  # fmt: skip
    proc.stdout.close()  # the reader gone before the first line
    assert (proc.stderr.read(), proc.wait(timeout=300)) == ("", 0)
    folders = [out] if cmd == "run" else [out / "default" / f"seed{k}" for k in (0, 1)]
    for folder in folders:
        assert (folder / "final.json").is_file()
        assert [r["epoch"] for r in read_metrics(folder)] == [0, 1]
        assert "epoch 2/2" in (folder / "train.log").read_text()


def test_dry_run_never_downloads(tmp_path, capsys, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("a dry run tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    rc = main(["run", "tiv_cifar10_lt100_ldam_drw", "--dry-run", "--set", f"data.root='{tmp_path}'",
               "--set", "data.params.download=true"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cifar-10-python.tar.gz" in err


def test_a_network_failure_is_one_line_naming_the_url(tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    rc = main(["run", "tiv_cifar10_lt100_ldam_drw", "--epochs", "1", "--out", str(tmp_path / "o"),
               "--set", f"data.root='{tmp_path}'", "--set", "data.params.download=true"])  # fmt: skip
    assert rc == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" not in line]
    assert len(err) == 1 and err[0].startswith("lpl-train: error: ")
    err = err[0]
    assert "cannot download https://www.cs.toronto.edu/" in err
    assert "name resolution" in err and str(tmp_path) in err


def test_sweep_warns_of_the_schedule_of_each_grid_point(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=5)
    argv = ["sweep", str(cfg), "--dry-run", "--out", str(tmp_path / "s"), "--seeds", "2",
            "--set", "schedule.kind='step'"]  # fmt: skip
    # a milestone at or past the last epoch of one point only
    assert main([*argv, "--set", "schedule.milestones=[3]", "--grid", "schedule.epochs=2,5"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert err == [
        "lpl-train: warning: grid point schedule.epochs=2: schedule.milestones [3] are at or past "
        "schedule.epochs=2: those lr steps never happen in this run"
    ]
    # the grid replaces the config's own milestone [3] in every point: only the point that keeps it warns
    cfg.write_text(dumps_toml(load_config(cfg, ["schedule.milestones=[3]"])))
    assert main([*argv, "--epochs", "2", "--grid", "schedule.milestones=[1],[1, 3]"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert err == [
        "lpl-train: warning: grid point schedule.milestones=[1, 3]: schedule.milestones [3] are at "
        "or past schedule.epochs=2: those lr steps never happen in this run"
    ]
    # a warning of every point is given once, as `run` gives it
    assert main([*argv, "--set", "schedule.milestones=[9]", "--grid", "optim.lr=0.1,0.2"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert err == [
        "lpl-train: warning: gaussian_linear_lpl: schedule.milestones [9] are at or past "
        "schedule.epochs=5: those lr steps never happen in this run"
    ]


def test_milestones_on_a_cosine_schedule_warn(tmp_path, capsys):
    cfg = gaussian_config(tmp_path)
    assert main(["run", str(cfg), "--dry-run", "--set", "schedule.kind='cosine'",
                 "--set", "schedule.milestones=[1]"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "schedule.milestones [1] (and factors) are ignored by schedule.kind='cosine'" in err


def test_one_summary_line_per_epoch_even_when_quiet(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=2)
    assert main(["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and "test top-1 error" in lines[0] and "eta" in lines[0]
    assert "\r" not in err
    log = (tmp_path / "r" / "train.log").read_text()
    assert all(line in log for line in lines)


def test_sweep_jobs_trains_runs_in_parallel_processes_and_reports_throughput(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=1)
    args = ["sweep", str(cfg), "--seeds", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 2 trained now" in out
    # 400 training samples per run, one epoch, two runs: counted from the runs' own records
    assert "(800 training images of 2 run(s) in " in out and "--jobs 2)" in out
    for seed in (0, 1):
        a, b = (json.loads((tmp_path / d / "default" / f"seed{seed}" / "final.json").read_text())
                for d in ("one", "two"))  # fmt: skip
        assert b["final"]["top1_error"] == pytest.approx(a["final"]["top1_error"], abs=1e-9)
    assert main([*args, "--out", str(tmp_path / "x"), "--jobs", "0"]) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "y"), "--seeds", "0"]) == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_sweep_first_seed_splits_the_seeds_of_one_sweep(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=1)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["sweep", str(cfg), "--seeds", "3", "--out", str(whole), "--quiet"]) == 0
    # two machines' share of the same sweep, into one folder: seeds 0 and 1..2
    assert main(["sweep", str(cfg), "--seeds", "1", "--out", str(split), "--quiet"]) == 0
    args = ["sweep", str(cfg), "--seeds", "2", "--first-seed", "1", "--out", str(split), "--quiet"]
    assert main(args) == 0
    assert "2 runs, 2 trained now" in capsys.readouterr().out
    for seed in (0, 1, 2):
        d = f"default/seed{seed}"
        assert load_config(split / d / "config.toml")["train"]["seed"] == seed
        a, b = (json.loads((r / d / "final.json").read_text())["final"] for r in (whole, split))
        assert b["top1_error"] == a["top1_error"] and b["per_class_acc"] == a["per_class_acc"]
    assert main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("skip (finished)") == 2
    bad = ["sweep", str(cfg), "--first-seed", "-1", "--out", str(tmp_path / "z"), "--quiet"]
    assert main(bad) == 2
    assert "--first-seed must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_a_missing_extra_is_named_in_the_error(tmp_path):
    """A core install (torch, numpy) lacks the [train] and [theory] extras: the errors say which extra to
    install instead of a bare 'No module named ...'."""
    from lpl_train.__main__ import _one_line

    msg = _one_line(ModuleNotFoundError("No module named 'PIL'", name="PIL"))
    assert (
        msg == "No module named 'PIL' (part of the [train] extra: pip install 'lpl-torch[train]')"
    )
    assert (
        _one_line(ModuleNotFoundError("No module named 'foo'", name="foo"))
        == "No module named 'foo'"
    )
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] == 'scipy':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import lpl_theory\n"
    )
    r = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert r.returncode == 1
    assert "lpl_theory needs 'scipy', part of the [theory] extra: pip install 'lpl-torch[theory]'" in (
        r.stderr)  # fmt: skip


def test_run_passes_quiet_and_resume_to_the_engine_and_reports_the_final_scores(
    tmp_path, capsys, monkeypatch
):
    """``run``'s options reach ``fit`` (--quiet: no progress bar whatever the config says, --resume), and
    the last line names the final scores (losses left out) and the run folder."""
    import lpl_train.engine as E

    calls = []

    def fit(cfg, out, resume=False, progress=None):
        calls.append((cfg["name"], Path(out), resume, progress))
        return {"final": {"top1_error": 12.3456, "train_loss": 0.5, "acc_few": 7.0}}

    monkeypatch.setattr(E, "fit", fit)
    cfg = gaussian_config(tmp_path)
    out = tmp_path / "r"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(out), "--resume"]) == 0
    assert calls == [
        ("gaussian_linear_lpl", out, False, False),
        ("gaussian_linear_lpl", out, True, None),
    ]
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines
        == [f"gaussian_linear_lpl: done, top1_error 12.35, acc_few 7.00; run folder {out}"] * 2
    )


def test_an_interrupted_command_says_how_to_go_on_with_exit_status_130(
    capsys, monkeypatch, tmp_path
):
    import lpl_train.__main__ as M

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(M, "_command", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "lpl-train: interrupted\n"
    for cmd in (["sweep", "gaussian_linear_ce"], ["study", "fmnist"]):
        assert main(cmd) == 130
        assert capsys.readouterr().err == (
            "lpl-train: interrupted; run the same command again: finished runs are kept, the others "
            "resume from their checkpoints\n"
        )
    monkeypatch.undo()

    # run: --resume only once a checkpoint exists (before it, a rerun restarts the run)
    out = tmp_path / "r"

    def stopped(cfg, folder, resume, quiet, checkpoint):
        folder.mkdir(exist_ok=True)
        if checkpoint:
            (folder / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    for checkpoint, advice in (
        (
            False,
            "no epoch had finished (no checkpoint): run the same command again without --resume",
        ),
        (True, "resume the run: the same command with --resume"),
    ):
        monkeypatch.setattr(M, "_run_one", lambda *a, c=checkpoint: stopped(*a, c))
        assert main(["run", "gaussian_linear_ce", "--out", str(out)]) == 130
        assert capsys.readouterr().err == f"lpl-train: interrupted; {advice}\n"


def test_a_missing_key_is_named_without_the_quotes_of_its_repr():
    from lpl_train.__main__ import _one_line

    assert _one_line(KeyError("data.root")) == "data.root"


def test_a_sweep_refuses_before_training_what_a_run_would_and_its_dry_run_says_the_same(
    tmp_path, capsys
):
    cfg = gaussian_config(tmp_path, epochs=1)
    root = tmp_path / "sw"
    # the second point's folder holds a finished run of another config (another --epochs)
    other = load_config(cfg, ["train.seed=0"], 2)
    (root / "optim.lr=0.1" / "seed0").mkdir(parents=True)
    (root / "optim.lr=0.1" / "seed0" / "config.toml").write_text(dumps_toml(other))
    (root / "optim.lr=0.1" / "seed0" / "final.json").write_text("{}")
    args = ["sweep", str(cfg), "--grid", "optim.lr=0.05,0.1", "--out", str(root), "--quiet"]
    for extra in (["--dry-run"], []):
        assert main([*args, *extra]) == 2
        cap = capsys.readouterr()
        assert "holds a finished run of another config" in cap.err and "schedule.epochs" in cap.err
        assert "skip (finished)" not in cap.out and "MPS" not in cap.out
        assert not (root / "optim.lr=0.05").exists()  # refused before the first point trained
    # an --out inside a run folder
    (tmp_path / "g1").mkdir()
    (tmp_path / "g1" / "final.json").write_text("{}")
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(cfg), "--out", str(tmp_path / "g1" / "sub"), *extra]) == 2
        assert "lies inside the run folder" in capsys.readouterr().err
    assert not (tmp_path / "g1" / "sub").exists()
    # a bad value of one grid point: named, and found before the good point trains
    bad = ["sweep", str(cfg), "--grid", "loss.params.alpha=0.25,-1", "--out", str(tmp_path / "a")]
    for extra in (["--dry-run"], ["--jobs", "2"]):
        assert main([*bad, *extra]) == 2
        cap = capsys.readouterr()
        assert cap.err.startswith(
            "lpl-train: error: grid point loss.params.alpha=-1: config key 'loss.params.alpha': "
            "alpha must be"
        )
        assert "would run" not in cap.out
    assert not (tmp_path / "a").exists()


def test_sweep_grid_takes_list_values_and_refuses_keys_it_would_override(tmp_path, capsys):
    cfg = gaussian_config(tmp_path, epochs=1)
    root = tmp_path / "sw"
    args = ["sweep", str(cfg), "--out", str(root), "--quiet"]
    assert main([*args, "--set", "schedule.kind='step'",
                 "--grid", "schedule.milestones=[1,2],[3]", "--dry-run"]) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines() == [
        f"would run: {root / 'schedule.milestones=_1,_2_' / 'seed0'}",
        f"would run: {root / 'schedule.milestones=_3_' / 'seed0'}",
    ]
    for extra, said in (
        (["--grid", "optim.lr=0.1", "--grid", "optim.lr=0.2"],
         "grid key 'optim.lr' is given twice; list all its values in one --grid"),
        (["--grid", "train.seed=0,1"], "--grid train.seed: a sweep sets train.seed itself"),
        (["--set", "train.seed=7"], "--set train.seed=7: a sweep sets train.seed itself"),
        (["--grid", "schedule.milestones=[1,2"], "unbalanced bracket"),
    ):  # fmt: skip
        assert main([*args, *extra, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lpl-train: error: ") and said in err
        assert err.count("\n") == 1
    # what building a grid point warns about is said once, on one line naming the point
    assert main([*args, "--grid", "loss.params.alpha=0.05,0.9", "--dry-run"]) == 0
    assert capsys.readouterr().err.startswith(
        "lpl-train: warning: grid point loss.params.alpha=0.9: alpha=0.9 exceeds epsilon"
    )
    # one that every point gives (a grid of what is not built) names no point: it is not the first's alone
    assert (
        main([*args, "--set", "loss.params.alpha=0.9", "--grid", "optim.lr=0.1,0.2", "--dry-run"])
        == 0
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("lpl-train: warning: alpha=0.9 exceeds epsilon") and "grid point" not in err
    )
    assert not root.exists()


def test_study_module_reports_a_figures_folder_under_a_file_in_one_line(tmp_path, capsys):
    """``python -m lpl_train.study`` reports what ``lpl-train study`` reports as one line (here --figures
    below a file: NotADirectoryError) the same way, exit status 2, not a traceback."""
    from lpl_train.study_cli import main as study_main

    (tmp_path / "f").write_text("")
    figures = str(tmp_path / "f" / "x")
    assert study_main(["--report-only", "--figures", figures]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m lpl_train.study: error: Not a directory: {figures!r}\n"
    assert main(["study", "--report-only", "--figures", figures]) == 2
    assert capsys.readouterr().err == f"lpl-train: error: Not a directory: {figures!r}\n"


@pytest.mark.parametrize(
    ("script", "argv", "said"),
    [
        ("gpu_longtail", ["--epochs", "-5"], "--epochs must be at least 1, got -5"),
        ("gpu_longtail", ["--epochs", "0"], "--epochs must be at least 1, got 0"),
        ("gpu_longtail", ["--jobs", "0"], "--jobs must be at least 1, got 0"),
        ("gpu_longtail", ["--probe-epochs", "0"], "--probe-epochs must be at least 1, got 0"),
        ("gpu_longtail", ["--budget-s", "nan"], "--budget-s must be a number of seconds >= 0"),
        ("bench_lpl", ["--repeats", "0"], "--repeats must be at least 1, got 0"),
        ("bench_lpl", ["--threads", "-1"], "--threads must be at least 1, got -1"),
        ("bench_lpl", ["--device", "bogus"], "--device 'bogus' is not a torch device"),
        ("bench_loader", ["--device", "bogus"], "--device 'bogus' is not a torch device"),
        ("bench_loader", ["--batches", "0"], "--batches must be at least 1, got 0"),
        ("gpu_check", ["--model-params", "x"], "--model-params 'x' is not JSON"),
        ("gpu_check", ["--model-params", "[1]"], "--model-params must be a JSON object"),
    ],
)
def test_benchmark_arguments_are_refused_before_anything_is_written(
    script, argv, said, tmp_path, capsys, monkeypatch
):
    """A bad count, device or JSON is a usage error (exit status 2, one line naming the option) before the
    benchmark writes its folder or starts: not a traceback after the output folder exists, and not a 0
    taken for the default (``--epochs 0`` was 200 epochs)."""
    from tests.train.test_capture import load_benchmark

    module = load_benchmark(script, monkeypatch)
    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    extra = {"gpu_longtail": ["--data", str(tmp_path / "data"), "--out", str(out)],
             "gpu_check": ["--out", str(out)]}.get(script, [])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        module.main([*argv, *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f": error: {said}" in err.splitlines()[-1]
    assert not out.exists()


def test_gpu_loss_check_help_is_usage_not_a_run():
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_loss_check.py"
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                       env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("usage: gpu_loss_check.py") and not r.stderr


@pytest.mark.parametrize("groups", ["counts:", "ranks:"])
def test_report_groups_with_nothing_after_the_colon_is_refused(groups, tmp_path, capsys):
    assert main(["report", str(tmp_path), "--groups", groups]) == 2
    assert capsys.readouterr().err == (
        f"lpl-train: error: groups {groups!r} must be 'counts', 'counts:MANY,FEW', 'ranks' or "
        "'ranks:F_MANY,F_FEW'\n"
    )


def test_a_file_given_for_a_folder_is_named_as_a_file_not_as_missing(tmp_path, capsys):
    from lpl_train.ablation import main as ablation_main

    (tmp_path / "f").write_text("")
    f = str(tmp_path / "f")
    assert main(["report", f]) == 2
    assert (
        capsys.readouterr().err
        == f"lpl-train: error: report folder {f!r} is a file, not a folder\n"
    )
    assert main(["study", str(tmp_path), "--report-only"]) == 2
    assert f"{str(tmp_path)!r} is a folder, not a study file (.toml)" in capsys.readouterr().err
    assert main(["study", "--report-only", "--records", str(tmp_path)]) == 2
    assert f"{str(tmp_path)!r} is a folder, not a records file" in capsys.readouterr().err
    assert ablation_main(["--collect", f]) == 2
    assert f"run folder {f!r} is a file, not a folder" in capsys.readouterr().err


def test_the_study_module_says_how_to_go_on_after_ctrl_c(capsys, monkeypatch):
    """``python -m lpl_train.study`` interrupted: exit status 130 and what to do, as ``lpl-train study``
    (it printed a traceback)."""
    import lpl_train.study_cli as SC

    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setattr(SC, "run", interrupted)
    assert SC.main(["--quick"]) == 130
    assert capsys.readouterr().err == (
        "python -m lpl_train.study: interrupted; run the same command again: finished runs are kept, "
        "the others resume from their checkpoints\n"
    )


@pytest.mark.parametrize(
    "argv",
    [["run", "gaussian_linear_ce", "--out", ""], ["sweep", "gaussian_linear_ce", "--out", ""],
     ["study", "--report-only", "--figures", ""], ["study", "--report-only", "--records", ""]],
)  # fmt: skip
def test_an_empty_path_option_is_refused_not_read_as_the_default(
    argv, capsys, tmp_path, monkeypatch
):
    """``--out ''`` read as "not given" (the default folder, runs/<name>); a usage error now, naming it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    name = argv[-2]
    assert f"error: {name} is empty: give a path, or leave {name} out" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
    from lpl_train.study_cli import main as study_main

    if argv[0] == "study":
        with pytest.raises(SystemExit):
            study_main(argv[1:])
        assert f"python -m lpl_train.study: error: {name} is empty" in capsys.readouterr().err


def test_the_exit_status_stands_when_the_reader_of_stdout_has_gone_away(monkeypatch):
    """A sweep with a diverged run exits 1; piped into a reader that went away before its last line, it
    exited 0, as if every run had trained."""
    import lpl_train.__main__ as M

    monkeypatch.setattr(M, "_command", lambda args: 1)
    monkeypatch.setattr(M, "flush_stdout", lambda: False)
    assert M.main(["list"]) == 1


class _BadItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        from lpl_train.data import BadFile

        raise BadFile(f"cannot decode image /x/{i}.jpg: truncated")


def test_an_error_from_a_dataloader_worker_is_its_own_message_and_where():
    """With data.loader.num_workers > 0 a damaged file's BadFile comes back from the worker with torch's
    'Caught BadFile in DataLoader worker process 0' and the worker's traceback in its message: the one
    line keeps the original message and the worker (it was the whole traceback, flattened)."""
    from lpl_train.__main__ import _one_line
    from lpl_train.data import BadFile

    with pytest.raises(BadFile) as err:
        list(torch.utils.data.DataLoader(_BadItems(), num_workers=1))
    assert "Original Traceback" in str(err.value)  # torch's wrapping, which the line undoes
    assert _one_line(err.value) == (
        "cannot decode image /x/0.jpg: truncated (in DataLoader worker process 0)"
    )
    assert _one_line(BadFile("plain")) == "plain"


def test_missing_data_is_explained_in_the_configs_keys(tmp_path, capsys):
    """The loaders' "pass download=True" is said as the config key (and the --set) that does it, by the
    run and by its dry run; a dry run with the key set says that the run downloads, and it does not."""
    nowhere = str(tmp_path / "nowhere")
    for name, more in (("tii_cifar100_resnet110_ce", ["--dry-run"]),
                       ("fmnist_lt100_ce", ["--dry-run"]), ("fmnist_lt100_ce", ["--epochs", "1"])):  # fmt: skip
        rc = main(
            ["run", name, "--set", f"data.root={nowhere}", "--out", str(tmp_path / "r"), *more]
        )
        err = capsys.readouterr().err
        assert rc == 2 and "--set data.params.download=true" in err, err
        assert "download=True" not in err and "It is set" not in err
    rc = main(["run", "tii_cifar100_resnet110_ce", "--set", f"data.root={nowhere}", "--set",
               "data.params.download=true", "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "It is set: the run downloads the data; a dry run never does." in err
    assert not (tmp_path / "nowhere").exists()


def test_under_torchrun_each_ranks_error_line_names_its_rank(tmp_path, capsys, monkeypatch):
    argv = ["run", "gaussian_linear_ce", "--set", "data.batch_size=67", "--dry-run"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"lpl-train: error (rank {rank}): data.batch_size=67 must be divisible"
        )
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: no rank to name
    monkeypatch.setenv("RANK", "0")
    assert main([*argv[:3], "data.params.bogus=1", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("lpl-train: error: ")


def test_under_torchrun_rank_0_alone_prints_the_dry_runs_summary_and_the_configs_warnings(
    tmp_path, capsys, monkeypatch
):
    """Every rank checks the config, but the summary and the config's schedule warnings (the same on
    every rank) are printed once, by rank 0; each rank still reports its own error."""
    ok = ["run", "gaussian_linear_ce", "--epochs", "1", "--out", str(tmp_path / "g"), "--dry-run"]
    short = ["run", "tiv_cifar10_lt100_ldam_drw", "--dry-run", "--epochs", "2",
             "--set", f"data.root='{tmp_path}'"]  # fmt: skip
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    seen = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main(ok) == 0
        seen[rank, "ok"] = capsys.readouterr()
        assert main(short) == 2
        seen[rank, "short"] = capsys.readouterr()
    assert seen["0", "ok"].out.startswith("gaussian_linear_ce: data gaussian ok")
    assert seen["1", "ok"].out == seen["1", "ok"].err == ""
    assert seen["0", "short"].err.count("lpl-train: warning: tiv_cifar10_lt100_ldam_drw: ") == 3
    assert "MISSING" in seen["0", "short"].out and seen["1", "short"].out == ""
    assert seen["1", "short"].err.startswith("lpl-train: error (rank 1): CIFAR-10 not found")
    assert seen["1", "short"].err.count("\n") == 1  # the error alone


def test_a_process_reports_as_the_run_reads_its_rank(tmp_path, capsys, monkeypatch):
    """Whether a process prints the dry run's summary and the config's warnings follows the run's own
    reading of the environment (DistInfo): RANK without WORLD_SIZE > 1 is one process, which reports,
    and RANK=00 is rank 0 (the check of RANK's text alone left both silent)."""
    ok = ["run", "gaussian_linear_ce", "--epochs", "1", "--out", str(tmp_path / "g"), "--dry-run"]
    short = ["run", "tiv_cifar10_lt100_ldam_drw", "--dry-run", "--epochs", "2",
             "--set", f"data.root='{tmp_path}'"]  # fmt: skip
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    for world, rank in ((None, "1"), ("1", "1"), ("2", "00")):
        if world is not None:
            monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("RANK", rank)
        where = f"WORLD_SIZE={world} RANK={rank}"
        assert main(ok) == 0
        assert capsys.readouterr().out.startswith("gaussian_linear_ce: data gaussian ok"), where
        assert main(short) == 2
        err = capsys.readouterr().err
        assert err.count("lpl-train: warning: tiv_cifar10_lt100_ldam_drw: ") == 3, (where, err)
