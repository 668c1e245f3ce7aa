"""Packaging: the plug-in losses import with the core dependencies alone, the metadata is what it says,
and `make` reinstalls torch when TORCH_SPEC changes."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {"scipy", "sympy", "matplotlib", "tqdm", "PIL", "sklearn", "lpl_theory"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def test_plug_in_losses_need_only_the_core_dependencies():
    code = BLOCKER + textwrap.dedent(
        """
        import torch
        import lpl_train.losses as L
        from lpl_train.losses import LPLLoss, LALPLLoss, MultiLabelLPLLoss, build_loss
        from lpl_train.loss_variation import LossVariation
        from lpl_train.models.heads import NormedLinear
        u = torch.randn(8, 3)
        y = torch.arange(8) % 3
        print(float(LPLLoss(3)(u, y)) > 0, len(L.available_losses()) > 20)
        try:
            import scipy  # noqa: F401
        except ModuleNotFoundError:
            print("blocked")
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["True True", "blocked", "[]"], out.stdout


def test_metadata_core_and_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] != "lpl"  # taken on the package index by an unrelated project
    assert meta["requires-python"] == ">=3.10"
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    core = {d.split(">")[0].split("=")[0].split(";")[0].strip() for d in meta["dependencies"]}
    assert core == {"numpy", "torch", "tomli"}
    extras = meta["optional-dependencies"]
    assert set(extras) == {"theory", "train", "notebooks", "tensorboard", "dev"}

    def names(reqs):
        return {r.split(">")[0].split("=")[0].strip() for r in reqs}

    for extra in ("theory", "train", "notebooks"):
        assert names(extras[extra]) - {"jupyterlab"} <= names(extras["dev"]), extra
    for pkg in ("lpl_train", "lpl_theory"):
        assert (ROOT / pkg / "py.typed").exists()


def test_every_file_the_packages_read_ships_with_them():
    """A file beside the code that is not Python (configs, the C++ kernel's source, the theory's JSON) is
    matched by the package data: a wheel without it would fail only when that file is first read."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]
    for pkg, patterns in data.items():
        shipped = {f for pattern in patterns for f in (ROOT / pkg).glob(pattern) if f.is_file()}
        files = {
            f
            for f in (ROOT / pkg).rglob("*")
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".py", ".pyc")
        }
        assert files, pkg
        assert files <= shipped, sorted(str(f.relative_to(ROOT)) for f in files - shipped)


def test_version_flags_of_both_command_lines():
    import lpl_train

    for args in (["-m", "lpl_train", "--version"], ["-m", "lpl_theory", "--version"]):
        out = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith(lpl_train.__version__)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_reinstalls_torch_when_the_spec_changes(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    fake = venv / "bin" / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n', encoding="utf-8")
    fake.chmod(0o755)

    def make(spec, pins=""):
        if log.exists():
            log.unlink()
        env = {**os.environ, "MAKEFLAGS": ""}
        subprocess.run(
            [
                "make",
                "-s",
                "install",
                f"VENV={venv}",
                f"TORCH_SPEC={spec}",
                f"PINS={pins}",
                "PIP_FIND=",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env=env,
            timeout=60,
        )
        return log.read_text(encoding="utf-8") if log.exists() else ""

    first = make("torch==2.13.0")
    assert "install -q torch==2.13.0" in first and "-e .[dev]" in first
    assert make("torch==2.13.0") == ""  # up to date: nothing runs
    calls = make("torch>=2.3,<3")
    assert "install -q torch>=2.3,<3" in calls and "-e .[dev]" in calls
    assert make("torch>=2.3,<3") == ""
    # pins go with torch and are kept through the project's install; changing them reinstalls
    calls = make("torch>=2.3,<3", "numpy==1.24.4 scipy==1.10.1")
    lines = calls.splitlines()
    assert any(line.endswith("torch>=2.3,<3 numpy==1.24.4 scipy==1.10.1") for line in lines)
    assert any(line.endswith("-e .[dev] numpy==1.24.4 scipy==1.10.1") for line in lines)
    assert make("torch>=2.3,<3", "numpy==1.24.4 scipy==1.10.1") == ""
    assert "-e .[dev]" in make("torch>=2.3,<3")


def test_the_data_package_without_pillow_names_the_extra_to_install():
    code = BLOCKER + textwrap.dedent(
        """
        try:
            import lpl_train.data  # noqa: F401
        except ModuleNotFoundError as exc:
            print(exc.name, "|", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "PIL | lpl_train.data needs 'PIL' (Pillow), part of the [train] extra: pip install "
        "'lpl-torch[train]'"
    ), out.stdout
