"""Bad inputs and faults of the command line, the data files and the run folder.

Every case asserts the exact outcome (exit status 2 with one line on stderr, or the exact exception type)
and that the message names the argument, key or file at fault. Loss parameters have their own battery.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lpl_train.__main__ import main
from lpl_train.config import dumps_toml, load_config
from lpl_train.data.common import BadFile, restricted_unpickle
from lpl_train.data.fmnist import read_idx
from lpl_train.engine.lock import _Lock

torch.set_flush_denormal(True)


def gaussian(tmp_path: Path, *sets: str, epochs: int = 2) -> Path:
    cfg = load_config(
        "gaussian_linear_lpl",
        ["data.params.num_train=200", "data.params.num_test=100", "data.batch_size=100",
         "train.device='cpu'", "train.progress=false", *sets],
        epochs=epochs,
    )  # fmt: skip
    path = tmp_path / "g.toml"
    path.write_text(dumps_toml(cfg))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lpl-train: error: "), err
    assert "Traceback" not in err and "weights_only=False" not in err
    return err


# ------------------------------------------------------------------------------ config keys and values
CONFIG_CASES = [
    ("optim.lrr=1", "optim.lrr"),
    ("data.foo=1", "data.foo"),
    ("train.bar=true", "train.bar"),
    ("model.size=3", "model.size"),
    ("loss.weight=2", "loss.weight"),
    ("schedule.cycles=2", "schedule.cycles"),
    ("extra.key=1", "extra"),
    ("schedule.epochs='two'", "schedule.epochs"),
    ("optim.lr='fast'", "optim.lr"),
    ("data.batch_size=1.5", "data.batch_size"),
    ("train.seed=true", "train.seed"),
    ("train.progress=1", "train.progress"),
    ("data.drop_last=2", "data.drop_last"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1", "optim.lr"),
    ("optim.lr=inf", "optim.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.eval_batch_size=-4", "data.eval_batch_size"),
    ("schedule.epochs=0", "schedule.epochs"),
    ("train.eval_every=0", "train.eval_every"),
    ("optim.momentum=-0.1", "optim.momentum"),
    ("optim.weight_decay=-1", "optim.weight_decay"),
    ("schedule.gamma=-1", "schedule.gamma"),
    ("train.amp='fp8'", "train.amp"),
    ("train.device='tpu'", "train.device"),
    ("train.channels_last='maybe'", "train.channels_last"),
    ("optim.name='rmsprop'", "optim.name"),
    ("schedule.kind='poly'", "schedule.kind"),
    ("data.sampler='random'", "data.sampler"),
    ("schedule.milestones=[5, 3]", "schedule.milestones"),
    ("schedule.factors=[0.1]", "schedule.factors"),
    ("schedule.warmup_start_factor=2", "schedule.warmup_start_factor"),
    ("name='..'", "name"),
    ("name='.'", "name"),
    ("name='../x'", "name"),
    ("name='a b'", "name"),
    ("name=''", "name"),
    ("data.params=3", "data.params"),
    ("optim=3", "optim"),
    ("data.loader={backend = 'gpu'}", "data.loader.backend"),
    ("data.augment='rotate'", "data.augment"),
    ("data.loader={prefetch = 2}", "data.loader.prefetch"),
    # the loader's own refusals of its options, with the config key in front
    ("data.loader={pad = -1}", "config key 'data.loader.pad': pad must be >= 0"),
    ("data.loader={pad_mode = 'x'}", "config key 'data.loader.pad_mode': pad_mode must be one of"),
    ("model.params.in_features=3", "model 'linear'"),
    ("model.name='no_such_net'", "no_such_net"),
    ("loss.name='no_such_loss'", "no_such_loss"),
    ("data.name='no_such_data'", "no_such_data"),
]


@pytest.mark.parametrize(("override", "named"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_dry_run_refuses_a_bad_config_naming_the_key(tmp_path, capsys, override, named):
    rc = main(["run", str(gaussian(tmp_path)), "--set", override, "--dry-run"])
    assert rc == 2
    assert named in one_error_line(capsys)


RUN_TIME_CASES = [
    (["loss={name='isda'}", "train.compile_loss=true"], "ISDALoss works on the features"),
    (["loss={name='disturb_label'}", "train.compile_loss=true"], "cannot be compiled whole"),
    (["data.batch_size=300", "data.drop_last=true"],
     "yields no batches: fewer training samples per epoch than one batch of data.batch_size=300"),
    # class-aware resampling: an epoch of 50 samples, less than one batch of 100
    (["data.sampler='class_aware'", "data.sampler_params={num_samples=50}", "data.drop_last=true"],
     "yields no batches"),
    (["data.sampler='class_aware'", "data.sampler_params={bogus=1}"], "data.sampler_params.bogus"),
    # a resampled epoch's loader is built as the epoch starts; its options are refused before that
    (["data.sampler='class_aware'", "data.augment='imagenet'"],
     "config key 'data.augment': augment='imagenet' is for image-file datasets"),
    (["data.augment='crop_flip'"], "config key 'data.augment': augment='crop_flip' needs uint8"),
    (["data.sampler='class_aware'", "data.loader={pad=-1}"],
     "config key 'data.loader.pad': pad must be >= 0"),
]  # fmt: skip


@pytest.mark.parametrize(("sets", "named"), RUN_TIME_CASES, ids=[c[1] for c in RUN_TIME_CASES])
def test_a_dry_run_refuses_what_the_run_would_refuse(tmp_path, capsys, sets, named):
    """What only the run's own build found (the loss compiled alone, the training loader's batches, the
    resampler's parameters): the dry run refuses it with the run's own line."""
    cfg = gaussian(tmp_path, *sets)
    assert main(["run", str(cfg), "--dry-run"]) == 2
    said = one_error_line(capsys)
    assert named in said
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == said
    assert not (tmp_path / "run").exists()  # refused before the run folder is written


@pytest.mark.parametrize(
    ("sets", "grid", "point"),
    [
        (
            ["loss={name='ce'}", "train.compile_loss=true"],
            "loss.name='ce','isda'",
            'loss.name="isda"',
        ),
        # points that differ only in [train] are checked each (not as one build of data, model, loss)
        (["loss={name='isda'}"], "train.compile_loss=false,true", "train.compile_loss=true"),
    ],
)
def test_a_sweep_refuses_the_loss_compiled_alone_before_any_point_trains(
    tmp_path, capsys, sets, grid, point
):
    cfg = gaussian(tmp_path, *sets)
    out = tmp_path / "sweep"
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(cfg), "--grid", grid, "--out", str(out), *extra]) == 2
        assert one_error_line(capsys).startswith(
            f"lpl-train: error: grid point {point}: config key 'train.compile_loss' is true"
        )
    assert not out.exists()  # the good point did not train first


def test_a_dry_run_builds_the_training_loader_with_its_options_before_the_step(tmp_path, capsys):
    """A bad loader option (a zero std) and a loss that cannot be compiled alone: the run builds its
    training loader, with the options, before its step, and so does the dry run."""
    path = gaussian(
        tmp_path, "loss={name='isda'}", "train.compile_loss=true", "data.loader={std=[0.0]}"
    )
    assert main(["run", str(path), "--dry-run"]) == 2
    said = one_error_line(capsys)
    assert "config key 'data.loader.std': std must be positive" in said
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == said


def test_a_dry_run_reports_the_first_of_two_faults_the_run_would_report(tmp_path, capsys):
    """A loader with no batch and a loss that cannot be compiled alone: the run finds the loader first
    (it builds the loaders before its step), and so does the dry run."""
    cfg = gaussian(tmp_path, "loss={name='isda'}", "train.compile_loss=true", "data.batch_size=300",
                   "data.drop_last=true")  # fmt: skip
    assert main(["run", str(cfg), "--dry-run"]) == 2
    said = one_error_line(capsys)
    assert "yields no batches" in said
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == said


ARG_CASES = [
    (["run", "no_such_config"], "no_such_config"),
    (["run", "{cfg}", "--epochs", "0"], "epochs"),
    (["run", "{cfg}", "--epochs", "-3"], "epochs"),
    (["run", "{cfg}", "--set", "optim.lr"], "optim.lr"),
    (["run", "{cfg}", "--set", "=3"], "=3"),
    (["run", "{tmp}/missing.toml"], "missing.toml"),
    (["run", "{tmp}/bad.toml"], "bad.toml"),
    (["sweep", "{cfg}", "--seeds", "0"], "--seeds"),
    (["sweep", "{cfg}", "--grid", "optim.lr"], "optim.lr"),
    (["sweep", "{cfg}", "--grid", "optim.lr="], "optim.lr"),
    (["sweep", "{cfg}", "--grid", "optim.nope=1,2"], "optim.nope"),
    (["report", "{tmp}/no_such_dir"], "no_such_dir"),
    (["report", "{tmp}/empty"], "no finished runs"),
]


@pytest.mark.parametrize(("argv", "named"), ARG_CASES, ids=[" ".join(a) for a, _ in ARG_CASES])
def test_bad_arguments_are_one_line_naming_the_argument(tmp_path, capsys, argv, named):
    cfg = gaussian(tmp_path)
    (tmp_path / "bad.toml").write_text("name = [unclosed\n")
    (tmp_path / "empty").mkdir()
    argv = [a.format(cfg=cfg, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert named in one_error_line(capsys)


# ------------------------------------------------------------------------------ run folder faults
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-epoch Gaussian run (and its config) to copy and damage."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = gaussian(tmp)
    out = tmp / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def resumable(finished_run, tmp_path: Path) -> tuple[Path, Path]:
    cfg, src = finished_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    (out / "final.json").unlink()
    return cfg, out


def _flip(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
        data = zf.read(info.filename)
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(data)
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def _write_object_pickle(path: Path) -> None:
    torch.save({"format": 1, "obj": Path("x")}, path)  # an object weights_only refuses


DAMAGE = {
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
    "random-bytes": (lambda p: p.write_bytes(os.urandom(4096)), "not a checkpoint archive"),
    "text-file": (lambda p: p.write_text("hello"), "not a checkpoint archive"),
    "plain-zip": (
        lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "x") or None,
        "cannot be read as a torch checkpoint",
    ),
    "foreign-torch-file": (lambda p: torch.save({"model": {}}, p), "not a checkpoint written"),
    "object-pickle": (_write_object_pickle, "objects other than tensors"),
    "flipped-bit": (_flip, "CRC"),
    "missing": (lambda p: p.unlink(), "no checkpoint"),
    "lacks-keys": (lambda p: torch.save({"format": 1, "model": {}}, p), "lacks"),
    "a-folder": (lambda p: (p.unlink(), p.mkdir()), "no checkpoint"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_from_a_damaged_checkpoint_is_one_line_naming_the_file(
    finished_run, tmp_path, capsys, damage
):
    cfg, out = resumable(finished_run, tmp_path)
    (out / "checkpoint.prev.pt").unlink()
    make, expected = DAMAGE[damage]
    make(out / "checkpoint.pt")
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 2
    err = one_error_line(capsys)
    assert expected in err and str(out / "checkpoint.pt") in err
    assert not (out / "final.json").exists()


FOREIGN = [
    ("optim.lr=0.5", "optim.lr (0.1 → 0.5)"),
    ("train.seed=3", "train.seed (0 → 3)"),
    ("loss.params.epsilon=0.3", "loss.params.epsilon"),
    ("data.seed=2", "data.seed (0 → 2)"),
    ("model.params.bias=false", "model.params.bias"),
    ("optim.weight_decay=0.01", "optim.weight_decay"),
]


@pytest.mark.parametrize(("override", "named"), FOREIGN, ids=[f[0] for f in FOREIGN])
def test_resume_under_another_config_names_the_differing_key(
    finished_run, tmp_path, capsys, override, named
):
    _, out = resumable(finished_run, tmp_path)
    (out / "config.toml").unlink()  # only the checkpoint's own config is left to compare with
    other = gaussian(tmp_path, override)
    assert main(["run", str(other), "--out", str(out), "--resume", "--quiet"]) == 2
    err = one_error_line(capsys)
    assert named in err and str(out / "checkpoint.pt") in err


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain" / "run"


def _is_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain"


OUT_CASES = {
    "under-a-regular-file": (_under_a_file, "a part of the path is a file"),
    "is-a-regular-file": (_is_a_file, "is not a folder"),
}


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, case):
    make, expected = OUT_CASES[case]
    out = make(tmp_path)
    assert main(["run", str(gaussian(tmp_path)), "--out", str(out), "--quiet"]) == 2
    err = one_error_line(capsys)
    assert expected in err and str(out) in err


@pytest.mark.parametrize("err_no", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_out_on_a_read_only_or_full_mount_is_one_line(tmp_path, capsys, monkeypatch, err_no):
    def refuse(self, *a, **k):
        raise OSError(err_no, os.strerror(err_no), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    out = tmp_path / "ro" / "run"
    assert main(["run", str(gaussian(tmp_path)), "--out", str(out), "--quiet"]) == 2
    err = one_error_line(capsys)
    assert os.strerror(err_no) in err and str(out) in err


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_full_disk_while_writing_a_checkpoint_is_one_line(tmp_path, capsys, monkeypatch, err_no):
    real = torch.save

    def failing(obj, f, *a, **k):
        if isinstance(obj, dict) and "optimizer" in obj:
            f.write(b"partial")
            raise OSError(err_no, os.strerror(err_no))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing)
    out = tmp_path / "run"
    assert main(["run", str(gaussian(tmp_path)), "--out", str(out), "--quiet"]) == 2
    err = one_error_line(capsys)
    assert os.strerror(err_no) in err and str(out / "checkpoint.pt") in err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def _hold(out: Path) -> _Lock:
    lock = _Lock(out / "RUNNING")
    lock.acquire()
    return lock


FOLDER_CASES = {
    "finished-run-again": (lambda out: None, [], "never overwritten"),
    "finished-without-checkpoint": (
        lambda out: [(out / n).unlink() for n in ("checkpoint.pt", "checkpoint.prev.pt")],
        [],
        "never overwritten",
    ),
    "records-without-checkpoint": (
        lambda out: [
            (out / n).unlink() for n in ("checkpoint.pt", "checkpoint.prev.pt", "final.json")
        ],
        [],
        "holds epoch records",
    ),
    "checkpoint-without-resume": (lambda out: (out / "final.json").unlink(), [], "pass --resume"),
    "locked": (_hold, [], "RUNNING"),
    "locked-resume": (_hold, ["--resume"], "RUNNING"),
    "resume-with-no-run": (lambda out: shutil.rmtree(out), ["--resume"], "no checkpoint"),
    "resume-damaged-records-of-old-checkpoint": (None, ["--resume"], "metrics.jsonl"),
    "resume-bad-final-json": (
        lambda out: (out / "final.json").write_text("[]"),
        ["--resume"],
        "final.json",
    ),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_run_folder_states_that_refuse_a_run(finished_run, tmp_path, capsys, case):
    cfg, src = finished_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    make, extra, expected = FOLDER_CASES[case]
    held = None
    if make is None:  # a checkpoint written before records were carried, and a damaged record
        (out / "final.json").unlink()
        ck = torch.load(out / "checkpoint.pt", weights_only=True)
        ck.pop("records")
        torch.save(ck, out / "checkpoint.pt")
        (out / "metrics.jsonl").write_text('{"epoch": 0}\n{broken\n')
    else:
        held = make(out)
    try:
        assert main(["run", str(cfg), "--out", str(out), "--quiet", *extra]) == 2
    finally:
        if isinstance(held, _Lock):
            held.release()
    err = one_error_line(capsys)
    assert expected in err and str(out) in err


# ------------------------------------------------------------------------------ report
REPORT_CASES = [
    ("final.json", "[]", "final.json", "expected a JSON object"),
    ("final.json", "null", "final.json", "expected a JSON object"),
    ("final.json", "3", "final.json", "expected a JSON object"),
    ("final.json", b"\xff\xfe\x00binary", "final.json", "not valid JSON"),
    ("final.json", "{", "final.json", "not valid JSON"),
    ("final.json", '{"final": {"top1_error": "abc"}}', "final.json", "final.top1_error"),
    ("final.json", '{"final": []}', "final.json", "'final'"),
    ("final.json", '{"final": {}, "best": 3}', "final.json", "'best'"),
    ("final.json", '{"final": {}, "seed": "x"}', "final.json", "'seed'"),
    ("config.toml", 'name = "x"\npaper = "IV"\n', "config.toml", "'paper'"),
    (
        "config.toml",
        'name = "x"\n[paper]\ntable = "IV"\ncolumn = "100:1"\n',
        "config.toml",
        "paper.row",
    ),
    (
        "config.toml",
        'name = "x"\n[paper]\ntable = 4\nrow = "LA"\ncolumn = "c"\n',
        "config.toml",
        "paper.table",
    ),
    ("config.toml", "name = [\n", "config.toml", "not valid TOML"),
    ("config.toml", b"\xff\xfe", "config.toml", "not valid TOML"),
]


@pytest.mark.parametrize(("name", "content", "file", "key"), REPORT_CASES,
                         ids=[f"{c[0]}:{c[1]!s:.20}" for c in REPORT_CASES])  # fmt: skip
def test_report_on_malformed_run_files_names_file_and_key(
    finished_run, tmp_path, capsys, name, content, file, key
):
    _, src = finished_run
    run = tmp_path / "runs" / "a"
    shutil.copytree(src, run)
    target = run / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["report", str(tmp_path / "runs")]) == 2
    err = one_error_line(capsys)
    assert str(run / file) in err and key in err


@pytest.mark.parametrize("err_no", [errno.EROFS, errno.EACCES])
def test_report_write_into_a_read_only_folder_is_one_line(
    finished_run, tmp_path, capsys, monkeypatch, err_no
):
    _, src = finished_run
    shutil.copytree(src, tmp_path / "runs" / "a")
    real = Path.write_text

    def refuse(self, *a, **k):
        if self.name.startswith("report."):
            raise OSError(err_no, os.strerror(err_no), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", refuse)
    assert main(["report", str(tmp_path / "runs"), "--write"]) == 2
    err = one_error_line(capsys)
    assert str(tmp_path / "runs" / "report.md") in err and os.strerror(err_no) in err


# ------------------------------------------------------------------------------ idx files
def _idx(dims: tuple[int, ...], payload: bytes, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(dims)]) + struct.pack(f">{len(dims)}i", *dims) + payload


IDX_CASES = {
    "empty": (b"", False, "bad magic"),
    "bad-magic": (b"\x01\x02\x08\x01" + b"\x00" * 8, False, "bad magic"),
    "float-data": (_idx((2,), b"\x00" * 8, dtype=0x0D), False, "not unsigned byte"),
    "ndim-0": (bytes([0, 0, 8, 0]), False, "truncated idx header"),
    "short-header": (bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02", False, "truncated idx header"),
    "negative-dim": (_idx((-5, 2), b""), False, "negative dimension"),
    "truncated-data": (_idx((4, 4), b"\x00" * 10), False, "holds 10 bytes"),
    "extra-data": (_idx((2, 2), b"\x00" * 9), False, "holds 9 bytes"),
    "header-larger-than-file": (_idx((60000, 28, 28), b"\x00" * 10), False, "holds 10 bytes"),
    "gz-empty": (b"", True, "bad magic"),
    "gz-truncated-data": (_idx((4, 4), b"\x00" * 10), True, "holds 10 bytes"),
    "gz-extra-data": (_idx((2, 2), b"\x00" * 9), True, "more bytes"),
    "gz-header-larger-than-inflatable": (
        _idx((60000, 28, 28), b"\x00" * 10),
        True,
        "more than a file",
    ),
    "gz-corrupt-stream": (None, True, "corrupt or truncated"),
    "gz-cut-stream": ("cut", True, "corrupt or truncated"),
}


@pytest.mark.parametrize("case", list(IDX_CASES))
def test_read_idx_refuses_corrupt_files_naming_them(tmp_path, case):
    raw, gz, expected = IDX_CASES[case]
    path = tmp_path / ("f.idx.gz" if gz else "f.idx")
    if raw is None:
        path.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(64))
    elif raw == "cut":
        path.write_bytes(gzip.compress(_idx((100,), bytes(range(100))))[:-12])
    else:
        path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(BadFile) as exc:
        read_idx(path)
    assert str(path) in str(exc.value) and expected in str(exc.value)


def test_read_idx_stops_at_the_size_the_header_promises(tmp_path):
    """A small gzip whose header promises 16 bytes but which inflates to 64 MB is refused after reading
    17 bytes, not after inflating everything."""
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(_idx((4, 4), b""))
        chunk = b"\x00" * (1 << 20)
        for _ in range(64):
            f.write(chunk)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    with pytest.raises(ValueError, match="more bytes"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_read_idx_reads_a_valid_file(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "ok.gz"
    path.write_bytes(gzip.compress(_idx((2, 3, 4), data.tobytes())))
    assert np.array_equal(read_idx(path), data)


# ------------------------------------------------------------------------------ CIFAR pickles
PICKLES = {
    "bytearray-1e11": (b"cbuiltins\nbytearray\n(L100000000000L\ntR.", "bytearray(int)"),
    "reconstruct-1e11": (
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(L100000000000L\ntcnumpy\ndtype\n"
        b"(Vu1\nI00\nI01\ntRtR.",
        "shape",
    ),
    "os-system": (b"cos\nsystem\n(Vecho owned\ntR.", "os.system is not allowed"),
    "builtins-eval": (b"cbuiltins\neval\n(V1+1\ntR.", "builtins.eval is not allowed"),
    "subprocess": (b"csubprocess\nPopen\n(Vls\ntR.", "subprocess.Popen is not allowed"),
    "empty": (b"", "not a valid data batch"),
    "truncated": (pickle.dumps({b"data": b"x" * 10})[:-5], "not a valid data batch"),
    "random": (bytes(range(7, 250)), "not a valid data batch"),
}


@pytest.mark.parametrize("case", list(PICKLES))
def test_restricted_unpickler_refuses_without_allocating(case):
    raw, expected = PICKLES[case]
    tracemalloc.start()
    with pytest.raises(BadFile) as exc:
        restricted_unpickle(raw, "data_batch_1 in evil.tar.gz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "data_batch_1 in evil.tar.gz" in str(exc.value) and expected in str(exc.value)
    assert peak < 8 << 20


def test_restricted_unpickler_still_reads_numpy_arrays():
    arr = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    got = restricted_unpickle(pickle.dumps({b"data": arr, b"labels": [1, 2]}, protocol=2), "batch")
    assert np.array_equal(got[b"data"], arr) and got[b"labels"] == [1, 2]


def test_metrics_with_a_damaged_line_name_file_and_line(finished_run, tmp_path):
    from lpl_train.engine import read_metrics

    _, src = finished_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:30])
    with pytest.raises(ValueError) as exc:
        read_metrics(out)
    assert str(out / "metrics.jsonl") in str(exc.value) and "line 2" in str(exc.value)
    assert json.loads(lines[0])["epoch"] == 0
