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


def _probe_folder(root: Path, times: list[float]) -> Path:
    root.mkdir(parents=True)
    lines = [json.dumps({"epoch": e, "train_time_s": t}) for e, t in enumerate(times)]
    (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_estimate_counts_the_fixed_costs_once_and_the_steady_epochs(gl, tmp_path):
    # two runs probed for 2 epochs in 20 s; their first epochs include the warm-up and the recording
    runs = [_probe_folder(tmp_path / "a", [5.0, 1.0]), _probe_folder(tmp_path / "b", [4.0, 1.2])]
    est = gl.estimate_rest(runs, spent=20.0, probe=2, epochs=200, jobs=2)
    assert est["epoch_s"] == 1.2 and est["waves"] == 1
    assert est["fixed_s"] == pytest.approx(20.0 - 6.0)  # the slowest run trained 6 s of the 20
    assert est["estimate_rest_s"] == pytest.approx(14.0 + 198 * 1.2 * 1.15)
    assert est["estimate_rest_s"] < 20.0 / 2 * 198 / 5  # scaling the whole probe overestimates 5x+
    # one run at a time: two waves, each paying its fixed part again
    est = gl.estimate_rest(runs, spent=20.0, probe=2, epochs=200, jobs=1)
    assert est["waves"] == 2 and est["fixed_s"] == pytest.approx(4.0)
    assert est["estimate_rest_s"] == pytest.approx(2 * (4.0 + 198 * 1.2 * 1.15))
    with pytest.raises(ValueError, match="fewer than 3 epoch records"):
        gl.estimate_rest(runs, spent=20.0, probe=3, epochs=200, jobs=2)


@pytest.mark.slow
def test_probe_then_the_rest_or_a_refusal(gl, tmp_path, capsys):
    data = tmp_path / "fmnist"
    data.mkdir()
    make_fmnist(data, per_class=100, test_per_class=6)
    common = ["--quick", "--data", str(data), "--epochs", "3", "--probe-epochs", "1"]
    assert gl.main([*common, "--out", str(tmp_path / "no"), "--budget-s", "0"]) == 3
    assert "not started: the estimate" in capsys.readouterr().out
    info = json.loads((tmp_path / "no" / "gpu_longtail.json").read_text())["info"]
    assert info["probe"]["epochs"] == 1 and info["probe"]["estimate_rest_s"] > 0
    assert gl.main([*common, "--out", str(tmp_path / "yes"), "--budget-s", "1e6"]) == 0
    res = json.loads((tmp_path / "yes" / "gpu_longtail.json").read_text())
    assert len(res["runs"]) == 5 and "estimate_rest_s" in res["info"]["probe"]
    for key in res["runs"]:  # every run resumed after the probe and trained all 3 epochs
        run = tmp_path / "yes" / "runs" / key
        epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [0, 1, 2], key
