"""The run folder's guarantees: lock, never overwritten, resume config check, verified checkpoints kept two
deep, metrics never lost, disk full, provenance and the per-epoch log."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from lpl_train import engine
from lpl_train.engine import (
    ConfigMismatch,
    CorruptCheckpoint,
    RunFolder,
    RunFolderError,
    RunLocked,
    fit,
    load_checkpoint,
    read_metrics,
)
from lpl_train.engine.lock import _Lock
from tests.train.test_engine import make_cfg, make_components, quiet, state, strip_timing

torch.set_flush_denormal(True)


def run(tmp_path: Path, name: str = "r", epochs: int = 3, stop: int | None = None, **train) -> Path:
    out = tmp_path / name
    fit(make_cfg(epochs=epochs, **train), out, components=make_components(), stop_after_epoch=stop,
        log=quiet)  # fmt: skip
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------- the lock
def test_a_folder_held_by_another_process_is_refused_naming_the_lock_file(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    held = _Lock(out / "RUNNING")
    held.acquire()
    try:
        with pytest.raises(RunLocked, match=r"in use by another process .*pid \d+.*RUNNING"):
            fit(make_cfg(epochs=1), out, components=make_components(), log=quiet)
        assert not (out / "metrics.jsonl").exists() and not (out / "config.toml").exists()
    finally:
        held.release()
    fit(make_cfg(epochs=1), out, components=make_components(), log=quiet)  # free again: it runs
    assert not (out / "RUNNING").exists()  # released when the run ends


def test_a_file_system_without_locks_is_named_not_taken_for_a_held_lock(tmp_path, monkeypatch):
    """flock failing for another reason than a holder (Lustre mounted without flock: ENOSYS; some NFS
    and FUSE mounts: ENOLCK) read as "in use by another process; wait for that run to end", and a sweep
    skipped every run as locked, exit status 0. It is named as what it is."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(RunFolderError) as info:
        _Lock(tmp_path / "RUNNING").acquire()
    assert not isinstance(info.value, RunLocked)
    assert str(info.value) == (
        f"cannot lock {str(tmp_path / 'RUNNING')!r}: Function not implemented: the run folder's file "
        "system does not support file locks (flock); put the run folder on one that does"
    )
    # through the run folder: no lock was taken, so nothing is left behind (folders, an empty RUNNING)
    out = tmp_path / "runs" / "a"
    with pytest.raises(RunFolderError, match="does not support file locks"):
        with RunFolder(out).locked():
            pass
    assert not (tmp_path / "runs").exists()


def test_the_lock_goes_with_a_killed_process(tmp_path):
    lock = tmp_path / "RUNNING"
    code = (
        "import os, signal, sys; from lpl_train.engine.lock import _Lock; "
        f"_Lock(__import__('pathlib').Path({str(lock)!r})).acquire(); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == -signal.SIGKILL and lock.exists()  # the file stays, the lock does not
    again = _Lock(lock)
    again.acquire()
    again.release()


def test_cli_run_refuses_a_locked_folder_with_one_line(tmp_path, capsys):
    from lpl_train.__main__ import main
    from tests.train.test_cli import gaussian_config

    out = tmp_path / "run"
    out.mkdir()
    held = _Lock(out / "RUNNING")
    held.acquire()
    try:
        assert main(["run", str(gaussian_config(tmp_path)), "--out", str(out), "--quiet"]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out / "RUNNING") in err


def test_a_run_that_fails_before_writing_leaves_no_folder_behind(tmp_path, capsys):
    from lpl_train.__main__ import main
    from tests.train.test_cli import gaussian_config

    cfg = str(gaussian_config(tmp_path))
    out = tmp_path / "sweep" / "key=1" / "seed0"  # none of these exists yet
    assert main(["run", cfg, "--set", "loss.params.bogus=1", "--out", str(out), "--quiet"]) == 2
    assert "unknown parameter 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
    mine = tmp_path / "mine"  # a folder the user made is kept, and what it holds
    (mine / "notes").mkdir(parents=True)
    assert main(["run", cfg, "--set", "loss.params.bogus=1", "--out", str(mine / "run")]) == 2
    assert not (mine / "run").exists() and (mine / "notes").is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", cfg, "--set", "loss.params.bogus=1", "--out", str(empty)]) == 2
    assert empty.is_dir()
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 0  # the run, once mended
    assert (out / "final.json").is_file()


@pytest.mark.parametrize("depth", [1, 3, 5])  # 5: a study's OUT/runs/DATASET/METHOD/POINT/seedN
def test_a_folder_holding_other_runs_is_refused_and_left_as_it_was(tmp_path, depth):
    parent = tmp_path / "runs"
    inner = run(parent, "/".join(["sub"] * depth), epochs=1)
    with pytest.raises(FileExistsError, match=rf"holds another run in '{inner}'.*not a parent"):
        fit(make_cfg(epochs=1), parent, components=make_components(), log=quiet)
    assert sorted(p.name for p in parent.iterdir()) == ["sub"]
    (inner / "config.toml").unlink()  # a finished run is found by its final.json alone
    with pytest.raises(FileExistsError, match="holds another run"):
        fit(make_cfg(epochs=1), parent, components=make_components(), log=quiet)
    stopped = run(tmp_path, "stopped", epochs=2, stop=1)  # an unfinished run below counts too
    (stopped / "checkpoint.pt").rename(tmp_path / "moved.pt")
    with pytest.raises(FileExistsError, match="holds another run"):
        fit(make_cfg(epochs=1), tmp_path, components=make_components(), log=quiet)


# --------------------------------------------------------------------------- never overwritten
def test_a_finished_run_without_its_checkpoint_is_not_overwritten(tmp_path):
    out = run(tmp_path, epochs=2)
    (out / "checkpoint.pt").unlink()
    (out / "checkpoint.prev.pt").unlink(missing_ok=True)
    before = snapshot(out)
    with pytest.raises(FileExistsError, match=r"finished run \(final.json\).*never overwritten"):
        fit(make_cfg(epochs=2, seed=7), out, components=make_components(), log=quiet)
    assert snapshot(out) == before


def test_records_without_a_checkpoint_are_not_overwritten(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (out / name).unlink(missing_ok=True)
    before = snapshot(out)
    with pytest.raises(FileExistsError, match="holds epoch records"):
        fit(make_cfg(epochs=3), out, components=make_components(), log=quiet)
    assert snapshot(out) == before


def test_a_previous_checkpoint_alone_is_not_overwritten(tmp_path):
    """``checkpoint.prev.pt`` alone (``checkpoint.pt`` and the records deleted) is still a resumable run:
    a fresh run refuses the folder and leaves it as it was."""
    out = run(tmp_path, epochs=3, stop=2)
    (out / "checkpoint.pt").unlink()
    (out / "metrics.jsonl").unlink()
    before = snapshot(out)
    with pytest.raises(FileExistsError, match=r"already holds a checkpoint \(checkpoint.prev.pt\)"):
        fit(make_cfg(epochs=3), out, components=make_components(), log=quiet)
    assert snapshot(out) == before


def test_a_fresh_run_suggests_resume_only_for_its_own_config_s_checkpoint(tmp_path):
    """A checkpointed folder: the same config is told to pass --resume; another config (whose --resume
    would be refused) is told which keys differ and to choose another --out, not to resume."""
    out = run(tmp_path, epochs=3, stop=2)
    before = snapshot(out)
    with pytest.raises(
        FileExistsError, match=r"checkpoint \(checkpoint.pt\); pass --resume"
    ) as same:
        fit(make_cfg(epochs=3), out, components=make_components(), log=quiet)
    with pytest.raises(FileExistsError) as other:
        fit(make_cfg(epochs=3, seed=4), out, components=make_components(), log=quiet)
    msg = str(other.value)
    assert "checkpoint (checkpoint.pt) of another config" in msg and "train.seed (0 → 4)" in msg
    assert "--resume" not in msg and "choose another --out" in msg and "--resume" in str(same.value)
    assert snapshot(out) == before


def test_a_run_stopped_before_its_first_checkpoint_restarts_but_another_configs_folder_is_kept(
    tmp_path,
):
    out = tmp_path / "r"
    with pytest.raises(
        KeyboardInterrupt
    ):  # killed in epoch 0: config.toml, empty metrics, no checkpoint
        fit(make_cfg(epochs=2), out, components=make_components(fail_at=(0, 2)), log=quiet)
    other = make_cfg(epochs=2, seed=4)
    before = snapshot(out)
    with pytest.raises(
        FileExistsError, match=r"config.toml of another config .*train.seed \(0 → 4\)"
    ):
        fit(other, out, components=make_components(), log=quiet)
    assert snapshot(out) == before
    (out / "config.toml").write_text("not = [toml")  # a stranger's file
    with pytest.raises(FileExistsError, match="it is not a config"):
        fit(make_cfg(epochs=2), out, components=make_components(), log=quiet)
    (out / "config.toml").write_bytes(before["config.toml"])
    fit(
        make_cfg(epochs=2), out, components=make_components(), log=quiet
    )  # the same config restarts
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1]


def test_resume_of_a_finished_run_rewrites_nothing(tmp_path):
    out = run(tmp_path, epochs=2)
    before = snapshot(out)
    mtime = (out / "final.json").stat().st_mtime_ns
    got = fit(make_cfg(epochs=2), out, components=make_components(), resume=True, log=quiet)
    assert got == json.loads(before["final.json"])
    after = snapshot(out)
    assert after.pop("train.log").startswith(before.pop("train.log"))  # one line added, no more
    assert after == before and (out / "final.json").stat().st_mtime_ns == mtime


def test_resume_of_a_finished_run_repairs_a_damaged_metrics_file_from_its_checkpoint(tmp_path):
    """A finished run's ``metrics.jsonl`` damaged after the fact (a line cut, a stray line): reading it
    says to resume, and --resume restores the records the final checkpoint carries (the stray line kept
    aside), touching nothing else; then the records read again."""
    out = run(tmp_path, epochs=3)
    before = snapshot(out)
    lines = before["metrics.jsonl"].decode().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:20] + "\n" + lines[2] + "\n")
    with pytest.raises(ValueError, match=r"line 2 is not a complete JSON record; resume the run"):
        read_metrics(out)
    said = []
    got = fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=said.append)
    assert got == json.loads(before["final.json"])
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2]
    after = snapshot(out)
    assert after.pop("metrics.superseded.jsonl").decode() == lines[1][:20] + "\n"
    assert after.pop("train.log").startswith(before.pop("train.log"))
    assert after == before  # metrics.jsonl as the run wrote it; nothing else rewritten
    assert any("moved to metrics.superseded.jsonl" in x for x in said)
    assert any("1 record(s) restored from the checkpoint" in x for x in said)


def test_resume_of_a_finished_run_with_another_config_is_refused(tmp_path):
    out = run(tmp_path, epochs=2)
    with pytest.raises(ConfigMismatch, match=r"optim\.lr \(0\.1 → 0\.5\)"):
        cfg = make_cfg(epochs=2)
        cfg["optim"]["lr"] = 0.5
        fit(cfg, out, components=make_components(), resume=True, log=quiet)


def test_a_finished_run_is_compared_with_the_config_its_final_json_keeps_not_an_edited_copy(
    tmp_path,
):
    """``final.json`` keeps the config the result was trained with; ``--resume`` compares with that, so a
    ``config.toml`` edited to another config (with the checkpoints gone, nothing else would tell) does not
    make the result pass for that config's."""
    from lpl_train.config import dumps_toml

    out = run(tmp_path, epochs=2)
    final = json.loads((out / "final.json").read_text())
    assert final["config"] == dumps_toml(make_cfg(epochs=2))
    assert (out / "config.toml").read_text().startswith(final["config"])
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (out / name).unlink(missing_ok=True)
    cfg = make_cfg(epochs=2)
    cfg["optim"]["lr"] = 0.5
    (out / "config.toml").write_text(dumps_toml(cfg))  # edited by hand to the other config
    with pytest.raises(ConfigMismatch, match=r"final.json' in optim\.lr \(0\.1 → 0\.5\)"):
        fit(cfg, out, resume=True, log=quiet)
    assert fit(make_cfg(epochs=2), out, resume=True, log=quiet) == final


def test_final_json_names_the_train_seed_and_the_data_seed_apart(tmp_path):
    cfg = make_cfg(epochs=1, seed=3)
    cfg["data"]["seed"] = 5
    fit(cfg, tmp_path / "r", components=make_components(), log=quiet)
    final = json.loads((tmp_path / "r" / "final.json").read_text())
    assert (final["seed"], final["data_seed"], final["epochs"]) == (3, 5, 1)


def test_resume_of_a_finished_run_without_its_checkpoint_compares_config_toml(tmp_path):
    """With its checkpoints gone, the config.toml of a finished run whose ``final.json`` keeps no config
    (written before results kept it) is what ``--resume`` is compared with."""
    out = run(tmp_path, epochs=2)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (out / name).unlink(missing_ok=True)
    final = json.loads((out / "final.json").read_text())
    del final["config"]
    (out / "final.json").write_text(json.dumps(final))
    cfg = make_cfg(epochs=2)
    cfg["optim"]["lr"] = 0.5
    with pytest.raises(ConfigMismatch, match=r"config.toml' in optim\.lr \(0\.1 → 0\.5\)"):
        fit(cfg, out, resume=True, log=quiet)
    assert fit(make_cfg(epochs=2), out, resume=True, log=quiet) == final


# --------------------------------------------------------------------------- resume config check
def test_resume_compares_the_checkpoints_own_config_even_without_config_toml(tmp_path):
    out = run(tmp_path, epochs=3, stop=1)
    (out / "config.toml").unlink()
    cfg = make_cfg(epochs=3)
    cfg["optim"]["lr"] = 5.0
    with pytest.raises(ConfigMismatch) as exc:
        fit(cfg, out, components=make_components(), resume=True, log=quiet)
    msg = str(exc.value)
    assert "optim.lr (0.1 → 5.0)" in msg and str(out / "checkpoint.pt") in msg
    assert (
        "description, train.progress, train.device, train.capture and train.tensorboard may differ"
        in msg
    )
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # untouched


def test_resume_names_every_differing_key(tmp_path):
    out = run(tmp_path, epochs=3, stop=1)
    cfg = make_cfg(epochs=4, seed=3)
    with pytest.raises(ConfigMismatch) as exc:
        fit(cfg, out, components=make_components(), resume=True, log=quiet)
    assert "schedule.epochs (3 → 4)" in str(exc.value) and "train.seed (0 → 3)" in str(exc.value)


def test_resume_may_change_progress_and_device(tmp_path):
    full = run(tmp_path, "full", epochs=3)
    out = run(tmp_path, epochs=3, stop=1)
    cfg = make_cfg(epochs=3, progress=True, device="auto")
    fit(cfg, out, components=make_components(), resume=True, progress=False, log=quiet)
    for k, v in state(full).items():
        assert torch.equal(v, state(out)[k]), k


# --------------------------------------------------------------------------- verified checkpoints
def _flip_a_weight_bit(path: Path) -> None:
    with zipfile.ZipFile(
        path
    ) as zf:  # the largest tensor's storage, found by its bytes in the file
        info = max(zf.infolist(), key=lambda i: i.file_size)
        data = zf.read(info.filename)
    raw = bytearray(path.read_bytes())
    offset = bytes(raw).find(data)
    assert offset > 0
    raw[offset + 5] ^= 0x10
    path.write_bytes(bytes(raw))


def test_records_out_of_order_are_put_back_in_order_on_resume(tmp_path):
    full = run(tmp_path, "full", epochs=4)
    out = run(tmp_path, epochs=4, stop=3)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    fit(make_cfg(epochs=4), out, components=make_components(), resume=True, log=quiet)
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2, 3]
    assert strip_timing(read_metrics(out)) == strip_timing(read_metrics(full))
    assert not (out / "metrics.superseded.jsonl").exists()  # every line matched: none moved aside


def test_resume_writes_back_a_lost_config_copy_and_a_restart_starts_a_new_log(tmp_path):
    out = run(tmp_path, epochs=3, stop=1)
    saved = (out / "config.toml").read_text()
    (out / "config.toml").unlink()
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert (out / "config.toml").read_text().split("\n# run:")[0] == saved.split("\n# run:")[0]
    fresh = tmp_path / "fresh"
    with pytest.raises(
        KeyboardInterrupt
    ):  # stopped before its first checkpoint: it restarts afresh
        fit(make_cfg(epochs=2), fresh, components=make_components(fail_at=(0, 2)), log=quiet)
    assert (fresh / "train.log").read_text().count("tiny: device") == 1
    fit(make_cfg(epochs=2), fresh, components=make_components(), log=quiet)
    assert (fresh / "train.log").read_text().count(
        "tiny: device"
    ) == 1  # the stopped run's log is gone


def test_a_flipped_bit_in_a_weight_is_refused_naming_the_file(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    _flip_a_weight_bit(out / "checkpoint.pt")
    with pytest.raises(CorruptCheckpoint) as exc:
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    msg = str(exc.value)
    assert str(out / "checkpoint.pt") in msg and "CRC" in msg
    assert "checkpoint.prev.pt" in msg and "after epoch 1" in msg and "rename it" in msg
    assert "weights_only" not in msg


@pytest.mark.parametrize("part", ["archive/data/0", "archive/data/4"])
def test_a_part_marked_as_a_folder_by_a_flipped_bit_is_refused(tmp_path, part):
    """One bit of a part's entry in the archive's directory (the DOS folder bit of its external
    attributes) is covered by no CRC, and torch's reader then loads other values for that tensor than the
    ones saved: the checkpoint is refused naming the part, not loaded with the wrong weights."""
    out = run(tmp_path, epochs=2, stop=1)
    path = out / "checkpoint.pt"
    raw = bytearray(path.read_bytes())
    name = part.encode()
    entry = next(i for i in range(len(raw)) if raw.startswith(b"PK\x01\x02", i)
                 and raw[i + 28 : i + 30] == len(name).to_bytes(2, "little")
                 and raw[i + 46 : i + 46 + len(name)] == name)  # fmt: skip
    raw[entry + 38] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(
        CorruptCheckpoint, match=f"is damaged: its part '{part}' is marked as a folder"
    ):
        load_checkpoint(path)


def test_a_part_marked_as_compressed_by_a_flipped_bit_is_refused(tmp_path):
    """One bit of the compression method in a part's directory entry (stored → deflated) made the CRC
    check's own read fail with zlib's error, which escaped as a traceback: it is a damaged checkpoint."""
    out = run(tmp_path, epochs=2, stop=1)
    path = out / "checkpoint.pt"
    raw = bytearray(path.read_bytes())
    entry = raw.find(b"PK\x01\x02")  # the directory entry of the first part (archive/data.pkl)
    assert raw[entry + 10 : entry + 12] == bytes(2)  # stored
    raw[entry + 10] ^= 8  # deflated
    path.write_bytes(bytes(raw))
    with pytest.raises(
        CorruptCheckpoint, match=r"is truncated or not a checkpoint archive \(error"
    ):
        load_checkpoint(path)


def test_the_previous_checkpoint_resumes_bit_exact(tmp_path):
    full = run(tmp_path, "full", epochs=3)
    out = run(tmp_path, epochs=3, stop=2)
    assert load_checkpoint(out / "checkpoint.prev.pt")["epoch"] == 1
    _flip_a_weight_bit(out / "checkpoint.pt")
    os.replace(out / "checkpoint.prev.pt", out / "checkpoint.pt")  # as the message advises
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    for k, v in state(full).items():
        assert torch.equal(v, state(out)[k]), k
    assert strip_timing(read_metrics(out)) == strip_timing(read_metrics(full))
    # the epoch-2 record of the abandoned checkpoint is kept aside, not deleted
    aside = (out / "metrics.superseded.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in aside] == [1]


def test_keeps_the_last_two_checkpoints(tmp_path):
    out = run(tmp_path, epochs=3)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 3
    assert load_checkpoint(out / "checkpoint.prev.pt")["epoch"] == 2


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    out = run(tmp_path, epochs=3, stop=1)
    good = (out / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, fh, *a, **k):
        real_save(obj, fh, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RunFolderError) as exc:
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    msg = str(exc.value)
    assert "No space left on device" in msg and str(out / "checkpoint.pt") in msg
    assert (out / "checkpoint.pt").read_bytes() == good
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files
    monkeypatch.setattr(torch, "save", real_save)
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2]


def test_a_checkpoint_that_cannot_be_put_in_place_leaves_no_temporary_file(tmp_path, monkeypatch):
    out = run(tmp_path, epochs=3, stop=1)
    good = (out / "checkpoint.pt").read_bytes()
    real_replace = os.replace

    def refuse(src, dst):
        if Path(dst).name == "checkpoint.pt":
            raise OSError(errno.EACCES, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(RunFolderError, match="Permission denied"):
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert (out / "checkpoint.pt").read_bytes() == good
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_each_epoch_is_on_disk_before_the_next_begins(tmp_path, monkeypatch):
    """The epoch's record and the folder entry of its checkpoint are fsynced (a power cut after the
    epoch loses neither)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = run(tmp_path, epochs=2)
    names = [Path(p).name for p in synced]
    assert names.count("metrics.jsonl") == 2
    events: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))
    )
    folder = engine.RunFolder(out)
    folder.save_checkpoint({"epoch": 9})
    # the checkpoint's rename is itself made durable: the folder is synced after it
    last = max(i for i, e in enumerate(events) if e == ("replace", str(out / "checkpoint.pt")))
    assert ("fsync", str(out.resolve())) in events[last + 1 :]


# --------------------------------------------------------------------------- metrics never lost
def test_a_corrupt_first_metrics_line_is_restored_and_intact_lines_kept(tmp_path):
    full = run(tmp_path, "full", epochs=4)
    out = run(tmp_path, epochs=4, stop=3)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(["{garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl' line 1 is not a complete JSON record"):
        read_metrics(out)
    fit(make_cfg(epochs=4), out, components=make_components(), resume=True, log=quiet)
    recs = read_metrics(out)
    assert [r["epoch"] for r in recs] == [0, 1, 2, 3]
    assert strip_timing(recs) == strip_timing(read_metrics(full))
    assert (out / "metrics.jsonl").read_text().splitlines()[1:3] == lines[1:3]  # intact lines kept
    assert (out / "metrics.superseded.jsonl").read_text() == "{garbage\n"


def test_a_truncated_last_line_does_not_drop_its_epoch(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    text = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(text[: len(text) - 40])  # killed while writing epoch 1
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(out)
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2]


def test_a_record_lost_after_its_checkpoint_is_restored(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n")  # killed between checkpoint and record
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert (out / "metrics.jsonl").read_text().splitlines()[:2] == lines
    assert not (out / "metrics.superseded.jsonl").exists()


def test_a_missing_middle_record_is_restored_and_no_intact_line_is_moved_aside(tmp_path):
    out = run(tmp_path, epochs=4, stop=3)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n" + lines[2] + "\n")  # epoch 1's line lost
    fit(make_cfg(epochs=4), out, components=make_components(), resume=True, log=quiet)
    assert (out / "metrics.jsonl").read_text().splitlines()[:3] == lines
    assert not (out / "metrics.superseded.jsonl").exists()
    assert "1 record(s) restored from the checkpoint" in (out / "train.log").read_text()


def _drop_checkpoint_records(out):
    """Rewrite the run's checkpoint as written before checkpoints carried the metrics records."""
    ck = load_checkpoint(out / "checkpoint.pt")
    del ck["records"]
    engine.atomic_save(ck, out / "checkpoint.pt")


def test_a_checkpoint_without_records_refuses_when_a_needed_record_is_damaged(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    _drop_checkpoint_records(out)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n{bad\n")
    with pytest.raises(ValueError, match=r"lacks the record of epoch 1 \(damaged line 2\)"):
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert (out / "metrics.jsonl").read_text() == lines[0] + "\n{bad\n"  # nothing deleted


def test_a_checkpoint_without_records_keeps_the_last_written_line_of_a_repeated_epoch(tmp_path):
    """Two lines of one epoch (a run resumed from its previous checkpoint by an engine that appended
    without repairing the file): the later one belongs to the run the checkpoint continues; the earlier
    one, of the abandoned attempt, is moved aside, not deleted."""
    out = run(tmp_path, epochs=3, stop=2)
    _drop_checkpoint_records(out)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    abandoned = json.dumps({**json.loads(lines[1]), "train_loss": 123.0})
    (out / "metrics.jsonl").write_text("\n".join([lines[0], abandoned, lines[1]]) + "\n")
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    kept = (out / "metrics.jsonl").read_text().splitlines()
    assert kept[:2] == lines and len(kept) == 3
    assert (out / "metrics.superseded.jsonl").read_text() == abandoned + "\n"


def test_two_runs_in_one_folder_cannot_interleave_records(tmp_path):
    """The second `run` of the same folder is refused while the first holds it (no [0, 0, 1, 1])."""
    out = tmp_path / "r"
    seen = []

    def second_start(msg: str) -> None:
        if msg.startswith("epoch 1/") and not seen:
            seen.append(msg)
            with pytest.raises(RunLocked):
                fit(make_cfg(epochs=2), out, components=make_components(), log=quiet)

    fit(make_cfg(epochs=2), out, components=make_components(), log=second_start)
    assert seen and [r["epoch"] for r in read_metrics(out)] == [0, 1]


# --------------------------------------------------------------------------- log, csv, provenance
def test_one_summary_line_per_epoch_in_train_log_and_csv(tmp_path):
    out = run(tmp_path, epochs=3)
    log = (out / "train.log").read_text().splitlines()
    epochs = [line for line in log if line.startswith("epoch ")]
    assert [e.split()[1] for e in epochs] == ["1/3", "2/3", "3/3"]
    assert all("loss" in e and "lr" in e and "test top-1 error" in e and "eta" in e for e in epochs)
    assert log[0].startswith("tiny: device cpu, precision fp32, 1 process(es), torch ")
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    recs = read_metrics(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["test_top1_error"]) for r in rows] == [r["test_top1_error"] for r in recs]
    assert "test_per_class_acc" not in rows[0]


def test_final_json_records_what_was_used(tmp_path, monkeypatch):
    import importlib.metadata

    def no_such_distribution(name):  # as on a clean install: the distribution is lpl-torch, not lpl
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", no_such_distribution)
    out = run(tmp_path, epochs=2)
    prov = json.loads((out / "final.json").read_text())["run"]
    assert prov["device"] == "cpu" and prov["precision"] == "fp32" and prov["world_size"] == 1
    assert prov["torch"] == torch.__version__ and prov["epochs_run"] == 2
    import lpl_train

    assert (
        prov["lpl_train"] == lpl_train.__version__
    )  # the package itself, not a distribution lookup
    text = (out / "config.toml").read_text()
    assert f"# run: device cpu, precision fp32, world_size 1, torch {torch.__version__}" in text
    from lpl_train.config import load_config

    assert load_config(out / "config.toml")["name"] == "tiny"  # still a valid config


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capfd):
    fit(make_cfg(epochs=1), tmp_path / "r", components=make_components(), progress=True, log=quiet)
    assert "\r" not in capfd.readouterr().err


# --------------------------------------------------------------------------- DDP options
def test_sync_batchnorm_on_cpu_is_refused_naming_the_key():
    from lpl_train.engine.distributed import DistInfo
    from lpl_train.engine.trainer import _Trainer

    cfg = make_cfg(epochs=1, sync_batchnorm=True)
    with pytest.raises(ValueError, match=r"'train.sync_batchnorm' is true but the device is cpu"):
        _Trainer(cfg, torch.device("cpu"), DistInfo(0, 0, 2), make_components(), False)


def test_cpu_ddp_weights_with_one_input_channel_get_the_gradient_layout():
    from torch import nn

    from lpl_train.engine.trainer import _match_cpu_grad_layout

    conv = nn.Conv2d(1, 4, 3)
    before = conv.weight.detach().clone()
    _match_cpu_grad_layout(conv)
    x = torch.randn(2, 1, 8, 8)
    conv(x).sum().backward()
    assert conv.weight.stride() == conv.weight.grad.stride()  # what DDP's bucket views compare
    assert torch.equal(conv.weight.detach(), before)


# --------------------------------------------------------------------------- best validation, load_run
def test_best_checkpoint_follows_validation_not_test_and_load_run_returns_it(tmp_path, capsys):
    from lpl_train.__main__ import main
    from lpl_train.engine import load_run
    from tests.train.test_cli import gaussian_config

    cfg = gaussian_config(tmp_path, epochs=3)
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(cfg),
                "--out",
                str(out),
                "--quiet",
                "--set",
                "data.params.val_fraction=0.25",
            ]
        )
        == 0
    )
    recs = read_metrics(out)
    assert all("val_top1_error" in r and "test_top1_error" in r for r in recs)
    vals = [r["val_top1_error"] for r in recs]
    best_epoch = vals.index(min(vals))  # first epoch with the lowest validation error
    assert recs[-1]["best_val"] == {
        "val_top1_error": min(vals),
        "epoch": best_epoch,
        "test_top1_error": recs[best_epoch]["test_top1_error"],  # the test score of that epoch
    }
    final = json.loads((out / "final.json").read_text())
    assert final["best_val"] == recs[-1]["best_val"]
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert float(rows[-1]["best_val_val_top1_error"]) == min(vals)
    assert [float(r["val_top1_error"]) for r in rows] == vals
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch + 1
    model, conf, info = load_run(out, "best")
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["model"][k]), k
    assert not model.training and conf["name"] == "gaussian_linear_lpl"
    assert (
        info["num_classes"] == 2
        and info["epoch"] == best_epoch + 1
        and info["final"]["epochs"] == 3
    )
    last, _, info_last = load_run(out)
    for k, v in last.state_dict().items():
        assert torch.equal(v, state(out)[k]), k
    assert info_last["epoch"] == 3
    with torch.no_grad():  # the loaded model reproduces the recorded test error
        from lpl_train.data import build_datasets

        d = conf["data"]
        b = build_datasets(d["name"], root=d["root"], seed=d["seed"], **d["params"])
        x, y = b.test.images.float(), b.test.targets
        if b.test.mean is not None:
            x = (x - torch.tensor(b.test.mean)) / torch.tensor(b.test.std)
        err = 100 * (last(x).argmax(1) != y).double().mean().item()
    assert err == pytest.approx(recs[-1]["test_top1_error"], abs=1e-9)


def test_load_run_errors_name_the_folder(tmp_path):
    from lpl_train.engine import load_run

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")
    out = run(tmp_path, epochs=1)
    with pytest.raises(FileNotFoundError, match=r"has no best.pt.*validation split"):
        load_run(out, "best")
    with pytest.raises(ValueError, match="which must be"):
        load_run(out, "first")


def test_load_run_of_an_unfinished_run_takes_its_classes_from_classes_json(tmp_path, monkeypatch):
    """An unfinished run (no final.json) is loaded without its data: classes.json, written when the run
    started, says what the model was built for (the dataset was rebuilt, and missing data failed)."""
    import lpl_train.data
    from lpl_train.config import load_config
    from lpl_train.engine import load_run

    out = tmp_path / "r"
    cfg = load_config("gaussian_linear_lpl", ["train.device='cpu'"], epochs=3)
    fit(cfg, out, stop_after_epoch=1, log=quiet)
    assert not (out / "final.json").exists()
    classes = json.loads((out / "classes.json").read_text())

    def no_data(*a, **k):
        raise FileNotFoundError("the data is gone")

    monkeypatch.setattr(lpl_train.data, "build_datasets", no_data)
    model, _, info = load_run(out)
    assert {k: info[k] for k in classes} == classes and info["epoch"] == 1 and info["final"] is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, load_checkpoint(out / "checkpoint.pt")["model"][k]), k


# --------------------------------------------------------------------------- precision
def test_fp16_with_gradient_scaling_trains_and_resumes_bit_exact(tmp_path):
    full = run(tmp_path, "full", epochs=3, amp="fp16")
    ck = load_checkpoint(full / "checkpoint.pt")
    assert ck["scaler"]["scale"] > 0  # the GradScaler's state travels with the checkpoint
    assert json.loads((full / "final.json").read_text())["run"]["precision"] == "fp16"
    part = run(tmp_path, "part", epochs=3, stop=1, amp="fp16")
    fit(make_cfg(epochs=3, amp="fp16"), part, components=make_components(), resume=True, log=quiet)
    for k, v in state(full).items():
        assert torch.equal(v, state(part)[k]), k


def test_a_resumed_fp16_run_continues_with_the_checkpoints_loss_scale(tmp_path):
    """The GradScaler's state is restored on resume: a loss scale set in the checkpoint (2**10, not torch's
    initial 2**16) is the one the resumed epochs use and write back (no step overflows at 2**10, and
    2000 steps without an overflow would be needed to grow it)."""
    part = run(tmp_path, "part", epochs=3, stop=1, amp="fp16")
    ck = load_checkpoint(part / "checkpoint.pt")
    ck["scaler"]["scale"] = 2.0**10
    engine.atomic_save(ck, part / "checkpoint.pt")
    fit(make_cfg(epochs=3, amp="fp16"), part, components=make_components(), resume=True, log=quiet)
    assert load_checkpoint(part / "checkpoint.pt")["scaler"]["scale"] == 2.0**10


def test_fp16_clips_the_unscaled_gradients(tmp_path):
    """With fp16 the gradients are unscaled before clipping: a threshold above every gradient norm then
    changes nothing (clipping the scaled gradients, 2**16 times larger, would shrink every step)."""
    plain = run(tmp_path, "plain", epochs=1, amp="fp16")
    cfg = make_cfg(epochs=1, amp="fp16")
    cfg["optim"]["grad_clip"] = 1000.0
    clipped = tmp_path / "clipped"
    fit(cfg, clipped, components=make_components(), log=quiet)
    for k, v in state(plain).items():
        assert torch.equal(v, state(clipped)[k]), k


@pytest.mark.parametrize(
    ("amp", "cuda", "bf16_ok", "expected"),
    [("auto", False, False, "fp32"), ("auto", True, True, "bf16"), ("auto", True, False, "fp16"),
     ("off", True, True, "fp32"), ("bf16", False, False, "bf16"), ("fp16", False, False, "fp16")],
)  # fmt: skip
def test_amp_auto_picks_bf16_or_fp16(monkeypatch, amp, cuda, bf16_ok, expected):
    from lpl_train.engine import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    assert resolve_precision(device, amp) == expected


# --------------------------------------------------------------------------- the file formats' edges
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_atomic_save_syncs_the_file_before_renaming_it_and_reports_errno(tmp_path, monkeypatch):
    from lpl_train.engine.files import atomic_save

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", Path(b).name))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_save({"format": 1}, tmp_path / "c.pt")
    at = events.index(("replace", "c.pt"))
    assert any(kind == "fsync" and name.startswith(".c.pt.tmp") for kind, name in events[:at])

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(RunFolderError) as exc:
        atomic_save({"format": 1}, tmp_path / "d.pt")
    assert exc.value.errno == errno.ENOSPC  # callers can tell a full disk from a read-only one


def test_a_metrics_line_without_an_epoch_is_damaged(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "loss": 1.0}\n{"loss": 2.0}\n')
    with pytest.raises(ValueError, match="line 2 is not a complete JSON record"):
        read_metrics(tmp_path)


def test_a_safe_loader_refusal_is_reported_without_torch_s_advice(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    torch.save({"format": 1}, path)

    def refuse(*a, **k):
        raise RuntimeError("Weights only load failed. Re-running with weights_only=False will work")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CorruptCheckpoint, match="refused by the safe loader") as exc:
        load_checkpoint(path)
    assert "weights_only" not in str(exc.value)


def test_config_differences_leave_out_provenance_and_volatile_keys():
    from lpl_train.engine.files import config_differences, finite_or_none

    stored = 'name = "a"\n[train]\nseed = 0\nprogress = true\n[run]\nhost = "x"\n'
    requested = 'name = "a"\n[train]\nseed = 1\nprogress = false\n[run]\nhost = "y"\n'
    assert config_differences(stored, requested) == ["train.seed (0 → 1)"]
    # free text: `--epochs 3` appends to it where `--set schedule.epochs=3` does not, for the same run
    described = (
        'name = "a"\ndescription = "x [run for 3 epochs (--epochs) instead of the recipe\'s 20]"\n'
    )
    assert config_differences('name = "a"\ndescription = "x"\n', described) == []
    assert finite_or_none({"a": (1.0, float("nan")), "b": [float("inf")]}) == {
        "a": [1.0, None],
        "b": [None],
    }


def test_a_schema_key_added_after_a_run_was_written_stands_for_its_default():
    """A run folder written before ``train.compile_loss`` existed was trained with the key's default: a
    requested config that leaves it at its default resumes, one that sets it otherwise is refused."""
    from lpl_train.config import SCHEMA
    from lpl_train.engine.files import config_differences

    assert SCHEMA["train"]["compile_loss"][1] is False
    stored = "[train]\nseed = 0\n"
    assert config_differences(stored, "[train]\nseed = 0\ncompile_loss = false\n") == []
    assert config_differences(stored, "[train]\nseed = 0\ncompile_loss = true\n") == [
        "train.compile_loss ('<absent>' → True)"
    ]
    # a top-level key too (the description, whose text never counts: see the volatile keys)
    assert config_differences('name = "x"\n', 'name = "x"\ndescription = ""\n') == []
    assert config_differences('name = "x"\n', 'name = "x"\ndescription = "y"\n') == []
    # a schema key the requested config lacks is still a difference (nothing here writes such a config)
    assert config_differences("[train]\ncompile_loss = false\n", "[train]\n") == [
        "train.compile_loss (False → '<absent>')"
    ]


def test_config_differences_name_a_key_that_only_one_config_has():
    """A parameter added on resume (absent from the checkpoint's config) is a difference, as is one
    dropped: params tables have no fixed keys, so both sides' keys are compared."""
    from lpl_train.engine.files import config_differences

    stored = '[loss]\nname = "ldam"\n[loss.params]\nmax_m = 0.5\n'
    requested = '[loss]\nname = "ldam"\n[loss.params]\nmax_m = 0.5\ns = 30\n'
    assert config_differences(stored, requested) == ["loss.params.s ('<absent>' → 30)"]
    assert config_differences(requested, stored) == ["loss.params.s (30 → '<absent>')"]


def test_config_differences_tell_an_int_parameter_from_a_float_or_a_bool():
    """``tau = 1`` (one head class for an index split) and ``tau = 1.0`` (every class: a fraction of C)
    are different losses; Python's 1 == 1.0 == True made a finished run's --resume accept the other one.
    Schema keys, whose types are checked, keep 1 and 1.0 the same (``optim.lr``)."""
    from lpl_train.engine.files import config_differences

    stored = '[loss]\nname = "lpl"\n[loss.params]\ntau = 1\nw = [1, {a = 1}]\n'
    assert config_differences(stored, stored) == []
    assert config_differences(stored, stored.replace("tau = 1", "tau = 1.0")) == [
        "loss.params.tau (1 → 1.0)"
    ]
    assert config_differences(stored, stored.replace("tau = 1", "tau = true")) == [
        "loss.params.tau (1 → True)"
    ]
    assert config_differences(stored, stored.replace("a = 1", "a = 1.0")) == [
        "loss.params.w ([1, {'a': 1}] → [1, {'a': 1.0}])"
    ]
    assert config_differences("[optim]\nlr = 1\n", "[optim]\nlr = 1.0\n") == []
    assert config_differences("[optim]\n", "[optim]\nweight_decay = 0\n") == []  # default 0.0


def test_a_killed_writers_temporary_files_are_removed_on_resume(tmp_path):
    """A kill during a checkpoint or text write leaves ``.checkpoint.pt.new<pid>`` (a checkpoint's size)
    or ``.<name>.tmp<pid>``; the next start or resume, holding the lock, removes them."""
    out = tmp_path / "r"
    fit(make_cfg(epochs=3), out, components=make_components(), stop_after_epoch=1, log=quiet)
    stale = [out / ".checkpoint.pt.new4242", out / ".metrics.jsonl.tmp17",
             out / ".checkpoint.prev.pt.tmp99"]  # fmt: skip
    for p in stale:
        p.write_bytes(b"x" * 100)
    keep = out / "notes.new.txt"  # a user's file of another pattern is left alone
    keep.write_text("mine")
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert not any(p.exists() for p in stale) and keep.is_file()


def test_runs_are_not_nested_inside_runs_or_studies(tmp_path):
    """A run is refused inside another run's folder (either report would mix them) and in a study's
    output folder; a folder under a project that merely has a config.toml of its own is fine."""
    outer = run(tmp_path, "outer", epochs=1)
    with pytest.raises(FileExistsError, match=rf"lies inside the run folder '{outer}'"):
        fit(make_cfg(epochs=1), outer / "a" / "b", components=make_components(), log=quiet)
    assert not (outer / "a").exists()
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("{}")
    with pytest.raises(FileExistsError, match=rf"holds another run in '{study}'"):
        fit(make_cfg(epochs=1), study, components=make_components(), log=quiet)
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.toml").write_text("[tool]\nx = 1\n")
    fit(make_cfg(epochs=1), project / "runs" / "r", components=make_components(), log=quiet)
    assert (project / "runs" / "r" / "final.json").is_file()


def test_wall_time_of_a_resumed_run_counts_the_processes_before_it(tmp_path, monkeypatch):
    """final.json's wall_s is the training time summed over the processes that trained the run (each up to
    the checkpoint the next resumed from; the checkpoint carries it), not the last process's alone: a
    run resumed four times used to report a fraction of its cost, one resumed after its last checkpoint
    almost 0. A checkpoint from before wall_s was stored still resumes, counting 0 for the earlier ones."""
    import itertools
    import time

    hour, real, calls = 3600.0, time.perf_counter, itertools.count()
    # the first processes' clock gains an hour at every reading: their share is at least an hour
    monkeypatch.setattr(time, "perf_counter", lambda: real() + hour * next(calls))
    out = run(tmp_path, epochs=3, stop=1)
    done = run(tmp_path, "done", epochs=2)
    monkeypatch.undo()
    first = load_checkpoint(out / "checkpoint.pt")["wall_s"]
    assert first >= hour
    got = fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert first <= got["wall_s"] < first + 600
    assert json.loads((out / "final.json").read_text())["wall_s"] == got["wall_s"]
    # killed after its last checkpoint, before final.json: resumed, it trains nothing, yet cost an hour+
    (done / "final.json").unlink()
    got = fit(make_cfg(epochs=2), done, components=make_components(), resume=True, log=quiet)
    assert got["wall_s"] == pytest.approx(load_checkpoint(done / "checkpoint.pt")["wall_s"], abs=60)
    assert got["wall_s"] >= hour
    # an old checkpoint without the field
    old = run(tmp_path, "old", epochs=3, stop=1)
    ck = load_checkpoint(old / "checkpoint.pt")
    del ck["wall_s"]
    torch.save(ck, old / "checkpoint.pt")
    got = fit(make_cfg(epochs=3), old, components=make_components(), resume=True, log=quiet)
    assert 0 < got["wall_s"] < 600


def _read_only(monkeypatch):
    """The run folders' file system as a read-only mount shows it (we run as root, so chmod would not
    stop a write): statvfs flags it ST_RDONLY, access() denies writing, and creating the lock file fails
    with EROFS."""
    real, real_access = os.statvfs, os.access
    monkeypatch.setattr(
        os, "statvfs", lambda p: type("S", (), {"f_flag": real(p).f_flag | os.ST_RDONLY})()
    )
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: not mode & os.W_OK and real_access(p, mode, **k)
    )

    def refuse(self):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.path))

    monkeypatch.setattr(_Lock, "acquire", refuse)


def test_resume_of_a_finished_run_on_a_read_only_file_system_reports_it_finished(
    tmp_path, monkeypatch
):
    """Resuming a finished run writes nothing: where the folder cannot be written it is read without the
    lock (which needs a write; a finished run is never rewritten, and nothing else can write there). It
    used to take the lock first and fail with 'cannot write run folder ...: permission denied'."""
    out = run(tmp_path, epochs=2)
    before = snapshot(out)
    _read_only(monkeypatch)
    lines = []
    got = fit(make_cfg(epochs=2), out, components=make_components(), resume=True, log=lines.append)
    assert got == json.loads(before["final.json"])
    assert lines == [f"{got['name']}: already finished ({out / 'final.json'}); nothing to do"]
    assert not (out / "RUNNING").exists()
    after = snapshot(out)
    assert after.pop("train.log").startswith(before.pop("train.log")) and after == before
    cfg = make_cfg(epochs=2)
    cfg["optim"]["lr"] = 0.5
    with pytest.raises(ConfigMismatch, match=r"optim\.lr \(0\.1 → 0\.5\)"):  # still checked
        fit(cfg, out, components=make_components(), resume=True, log=quiet)


def test_a_folder_that_cannot_be_written_is_refused_with_the_os_reason(tmp_path, monkeypatch):
    """A read-only file system is reported as such, not as a missing permission (os.access cannot tell
    them apart); without write permission the reason is the permission."""
    out = tmp_path / "r"
    out.mkdir()
    with monkeypatch.context() as m:
        _read_only(m)
        with pytest.raises(RunFolderError) as exc:
            fit(make_cfg(epochs=1), out, components=make_components(), log=quiet)
    assert str(exc.value) == f"cannot write run folder {str(out)!r}: {os.strerror(errno.EROFS)}"
    assert exc.value.errno == errno.EROFS and list(out.iterdir()) == []
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False)
    with pytest.raises(RunFolderError) as exc:
        fit(make_cfg(epochs=1), out, components=make_components(), log=quiet)
    assert str(exc.value) == f"cannot write run folder {str(out)!r}: {os.strerror(errno.EACCES)}"
    assert exc.value.errno == errno.EACCES


@pytest.mark.parametrize("edit", ["lr", "garbage"])
def test_a_config_toml_that_no_longer_states_the_run_is_rewritten_from_the_checkpoint(
    tmp_path, edit
):
    """--resume trains with the checkpoint's own config; a config.toml edited by hand (or damaged) would
    misstate the run to `report` and to the reader: it is set aside and written again."""
    out = run(tmp_path, epochs=3, stop=1)
    path = out / "config.toml"
    original = path.read_text()
    bad = original.replace("lr = 0.1", "lr = 0.5") if edit == "lr" else "\x00 not toml ["
    assert bad != original
    path.write_text(bad)
    notes: list[str] = []
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=notes.append)
    assert (out / "config.superseded.toml").read_text() == bad
    assert path.read_text().startswith(original.split("\n# run:")[0])  # the checkpoint's config
    want = "optim.lr (0.5 → 0.1)" if edit == "lr" else "(it is not a config)"
    assert any(
        "config.toml differed from the checkpoint's config in" in n and want in n for n in notes
    )
    # the run folder reads as the run it is
    from lpl_train.report import collect_runs

    assert [r.config["optim"]["lr"] for r in collect_runs(out)] == [0.1]


class _RunsCodeWhenUnpickled:
    """An object whose unpickling calls a function (here a harmless one): what a hostile file would do."""

    def __reduce__(self):
        return (os.getpid, ())


def test_a_code_carrying_checkpoint_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format": 1, "epoch": 1, "payload": _RunsCodeWhenUnpickled()}, path)
    with pytest.raises(CorruptCheckpoint, match="objects other than tensors") as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "weights_only" not in str(exc.value)


def test_a_plain_torch_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"epoch": 3, "model": {"w": torch.zeros(2)}}, path)  # intact, safe, but not ours
    with pytest.raises(CorruptCheckpoint, match="not a checkpoint written by lpl_train.engine"):
        load_checkpoint(path)


def test_an_empty_checkpoint_file_is_named_empty(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"")
    with pytest.raises(CorruptCheckpoint, match=r"is empty \(0 bytes\)") as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value)


def test_resume_of_a_finished_run_compares_and_loads_its_checkpoint(tmp_path):
    """While its checkpoint remains, a finished run whose ``final.json`` keeps no config (written before
    results kept it) is compared with the checkpoint's own config (not only config.toml), and the
    components passed to fit get the checkpoint's weights."""
    out = run(tmp_path, epochs=2)
    (out / "config.toml").unlink()
    final = json.loads((out / "final.json").read_text())
    (out / "final.json").write_text(json.dumps({k: v for k, v in final.items() if k != "config"}))
    cfg = make_cfg(epochs=2)
    cfg["optim"]["lr"] = 0.5
    with pytest.raises(ConfigMismatch, match=r"checkpoint .*optim\.lr \(0\.1 → 0\.5\)"):
        fit(cfg, out, components=make_components(), resume=True, log=quiet)
    comps = make_components()
    fit(make_cfg(epochs=2), out, components=comps, resume=True, log=quiet)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    got = comps.model.state_dict()
    assert saved.keys() == got.keys() and all(torch.equal(saved[k], got[k]) for k in saved)


def test_a_finished_run_resumed_from_an_earlier_checkpoint_keeps_its_records(tmp_path):
    """A finished run whose checkpoint.pt is an earlier epoch's (checkpoint.prev.pt renamed into its
    place, as the message about a damaged checkpoint suggests): its intact last record stays in
    metrics.jsonl, and components passed to fit are not given that epoch's weights as the result's."""
    out = run(tmp_path, epochs=3)
    before = (out / "metrics.jsonl").read_bytes()
    os.replace(out / "checkpoint.prev.pt", out / "checkpoint.pt")
    lines = []
    fit(make_cfg(epochs=3), out, resume=True, log=lines.append)
    assert (out / "metrics.jsonl").read_bytes() == before
    assert not (out / "metrics.superseded.jsonl").exists()
    assert any("checkpoint.pt is of epoch 2, not the run's last (3)" in s for s in lines), lines
    with pytest.raises(RunFolderError, match=r"is of epoch 2, not the finished run's last \(3\)"):
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)


def test_a_finished_run_with_a_damaged_checkpoint_is_reported_finished_not_to_be_resumed(tmp_path):
    """--resume of a finished run whose checkpoint.pt is damaged: its result stands, so the run is
    reported finished (the damage noted, nothing rewritten, no advice to resume from an earlier
    checkpoint, which would not be the result's); components that need its weights are refused."""
    out = run(tmp_path, epochs=3)
    _flip_a_weight_bit(out / "checkpoint.pt")
    before = snapshot(out)
    lines = []
    got = fit(make_cfg(epochs=3), out, resume=True, log=lines.append)
    after = snapshot(out)
    assert after.pop("train.log").startswith(before.pop("train.log"))  # the notes are appended
    assert got == json.loads(before["final.json"]) and after == before
    (note,) = [s for s in lines if "CRC" in s]
    assert "the run is finished and its result (final.json) is intact" in note
    assert "rename" not in note and "resume from there" not in note
    assert "already finished" in lines[-1]
    with pytest.raises(CorruptCheckpoint, match="cannot be given them"):
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    with pytest.raises(ConfigMismatch):  # another config is still refused
        fit(make_cfg(epochs=3, seed=4), out, resume=True, log=quiet)


def test_a_checkpoint_lacking_training_state_is_refused_naming_what_it_lacks(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    torch.save({"format": 1, "epoch": 1, "model": {}, "config": ""}, out / "checkpoint.pt")
    with pytest.raises(
        CorruptCheckpoint, match=r"lacks step, loss, optimizer, rng: it is not a training"
    ):
        engine.RunFolder(out).resume_checkpoint('name = "a"\n')


def test_a_damaged_previous_checkpoint_is_not_called_intact(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    _flip_a_weight_bit(out / "checkpoint.pt")
    _flip_a_weight_bit(out / "checkpoint.prev.pt")  # torch alone would still load it
    with pytest.raises(CorruptCheckpoint) as exc:
        fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    msg = str(exc.value)
    assert str(out / "checkpoint.prev.pt") in msg and "is damaged too" in msg
    assert "intact" not in msg


def test_a_checkpoint_without_records_keeps_every_intact_line_from_epoch_0(tmp_path):
    out = run(tmp_path, epochs=3, stop=2)
    _drop_checkpoint_records(out)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    fit(make_cfg(epochs=3), out, components=make_components(), resume=True, log=quiet)
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2]
    assert (out / "metrics.jsonl").read_text().splitlines()[:2] == lines
    assert not (out / "metrics.superseded.jsonl").exists()


def test_lines_moved_aside_by_two_resumes_are_all_kept(tmp_path):
    out = run(tmp_path, epochs=4, stop=2)
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write("{first damage\n")
    fit(make_cfg(epochs=4), out, components=make_components(), resume=True, stop_after_epoch=3,
        log=quiet)  # fmt: skip
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write("{second damage\n")
    fit(make_cfg(epochs=4), out, components=make_components(), resume=True, log=quiet)
    assert (out / "metrics.superseded.jsonl").read_text() == "{first damage\n{second damage\n"
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2, 3]


def test_an_epoch_whose_checkpoint_fails_leaves_no_record_so_the_run_can_restart(
    tmp_path, monkeypatch
):
    """The checkpoint is written before the epoch's record: a run stopped while writing its first
    checkpoint leaves no record without a checkpoint (which would block both a restart and --resume)."""
    out = tmp_path / "r"

    def disk_full(self, state, name="checkpoint.pt"):
        raise RunFolderError("cannot write checkpoint: No space left on device")

    with monkeypatch.context() as m:
        m.setattr(engine.RunFolder, "save_checkpoint", disk_full)
        with pytest.raises(RunFolderError, match="No space left"):
            fit(make_cfg(epochs=2), out, components=make_components(), log=quiet)
    assert read_metrics(out) == []
    fit(make_cfg(epochs=2), out, components=make_components(), log=quiet)  # a fresh run restarts
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1]


def test_saving_best_pt_leaves_the_previous_checkpoint_alone(tmp_path):
    folder = engine.RunFolder(tmp_path)
    for name, value in (
        ("checkpoint.pt", 1),
        ("checkpoint.pt", 2),
        ("best.pt", 10),
        ("best.pt", 11),
    ):
        folder.save_checkpoint({"v": value}, name)

    def value(name):
        return torch.load(tmp_path / name, weights_only=True)["v"]

    assert (value("checkpoint.prev.pt"), value("checkpoint.pt"), value("best.pt")) == (1, 2, 11)


def _with_val(comps):
    from tests.train.test_engine import TinyLoader, make_data

    (_, _), (xte, yte) = make_data()
    comps.val_loader = TinyLoader(xte[:40], yte[:40], 32, False)
    return comps


def _best_epoch(out):
    return torch.load(out / "best.pt", weights_only=True)["best_val"]["epoch"]


def _fit_with_val(out, **kw):
    """Six epochs of the tiny run with a validation split."""
    return fit(make_cfg(epochs=6), out, components=_with_val(make_components()), **kw)


def _resume_to_the_end(out) -> list[str]:
    """Resume the stopped run to its end; its log lines. best.pt is then that of final.json's best epoch,
    and no best.next.pt is left."""
    lines: list[str] = []
    _fit_with_val(out, resume=True, log=lines.append)
    final = json.loads((out / "final.json").read_text())
    assert _best_epoch(out) == final["best_val"]["epoch"] and not (out / "best.next.pt").exists()
    return lines


def test_a_crash_before_a_best_epochs_checkpoint_leaves_best_pt_of_the_checkpoints_best(
    tmp_path, monkeypatch
):
    """The weights of a new best validation epoch become best.pt only once that epoch's checkpoint is
    written: a process stopped in between would otherwise leave best.pt of an epoch that the resumed run
    trains again (on a GPU not bit for bit, so its best may be another epoch)."""
    out = tmp_path / "r"
    saved: list[tuple[str, int]] = []
    real = engine.RunFolder.save_checkpoint

    def stop_after_a_new_best(folder, state, name="checkpoint.pt"):
        if name == "checkpoint.pt" and state["epoch"] >= 2 and saved and saved[-1][0] != name:
            raise KeyboardInterrupt  # killed between the new best's weights and its checkpoint
        saved.append((name, state["epoch"]))
        real(folder, state, name)

    with monkeypatch.context() as m:
        m.setattr(engine.RunFolder, "save_checkpoint", stop_after_a_new_best)
        with pytest.raises(KeyboardInterrupt):
            _fit_with_val(out, log=quiet)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (out / "best.next.pt").is_file()  # the new best's weights, not yet best.pt
    assert _best_epoch(out) == ckpt["best_val"]["epoch"] < ckpt["epoch"]
    assert any("best.next.pt removed" in line for line in _resume_to_the_end(out))
    # the resumed run equals one never stopped (on a CPU, bit for bit), best.pt included
    whole = tmp_path / "whole"
    _fit_with_val(whole, log=quiet)
    assert _best_epoch(whole) == _best_epoch(out)
    wa, wb = (torch.load(f / "best.pt", weights_only=True)["model"] for f in (out, whole))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_crash_between_a_best_epochs_checkpoint_and_its_best_pt_keeps_those_weights(
    tmp_path, monkeypatch
):
    out = tmp_path / "r"
    real = os.replace

    def stop_before_the_rename(src, dst):
        if Path(src).name == "best.next.pt" and load_checkpoint(src)["epoch"] >= 2:
            raise KeyboardInterrupt  # killed after the checkpoint, before best.pt
        real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(engine.run_folder.os, "replace", stop_before_the_rename)
        with pytest.raises(KeyboardInterrupt):
            _fit_with_val(out, log=quiet)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    pending = load_checkpoint(out / "best.next.pt")
    assert pending["epoch"] == ckpt["epoch"] and _best_epoch(out) < ckpt["best_val"]["epoch"]
    assert any("made best.pt" in line for line in _resume_to_the_end(out))
