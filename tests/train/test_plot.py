"""``lpl-train plot``: panels of run folders overlaid, per-class axes head → tail by training count; library
plotting never touches matplotlib's backend; saved figures are reproducible byte for byte."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from lpl_train import plot as P
from lpl_train.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _run(folder: Path, name: str, counts, acc, lv, multi=False) -> Path:
    """A finished run folder by hand: two epochs of metrics, final.json with per-class results."""
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f'name = "{name}"\n')
    key = "test_map" if multi else "test_top1_error"
    lines = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), key: 50.0 - e, "loss_variation": lv}
        for e in (0, 1)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    fin = {"ap_per_class" if multi else "per_class_acc": acc}
    (folder / "final.json").write_text(json.dumps({"name": name, "class_counts": counts,
                                                   "multi_label": multi, "final": fin}))  # fmt: skip
    return folder


def _capture(monkeypatch):
    drawn = {}

    def save(fig, path, dpi=120):
        drawn["axes"] = fig.axes
        drawn["path"] = Path(path)
        return Path(path)

    monkeypatch.setattr(P, "save_figure", save)
    return drawn


def test_per_class_panels_run_head_to_tail_by_training_count(tmp_path, monkeypatch):
    # class 2 is the most frequent, then 0, then 1: the axis must read 2, 0, 1
    counts = [50, 10, 90]
    a = _run(tmp_path / "a", "lpl", counts, [70.0, 20.0, 90.0],
             {"relative_variation": [0.1, 0.5, -0.2], "count": counts})  # fmt: skip
    b = _run(tmp_path / "b", "ce", counts, [60.0, 10.0, 95.0],
             {"relative_variation": [0.0, 0.0, 0.0], "count": counts})  # fmt: skip
    drawn = _capture(monkeypatch)
    P.plot_runs([a, b], tmp_path / "p.png")
    curves, test, acc, lv = drawn["axes"]
    assert [t.get_text() for t in acc.get_xticklabels()] == ["2", "0", "1"]
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in acc.get_lines()}
    assert lines["lpl"] == [90.0, 70.0, 20.0] and lines["ce"] == [95.0, 60.0, 10.0]
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in lv.get_lines()}
    assert lines["lpl"] == pytest.approx([-20.0, 10.0, 50.0])  # percent, head → tail
    assert {ln.get_label() for ln in curves.get_lines()} == {"lpl", "ce"}
    assert list(test.get_lines()[0].get_ydata()) == [50.0, 49.0]


def test_multilabel_runs_plot_pos_and_neg_variation_and_formats_follow_the_suffix(tmp_path, capsys):
    lv = {"pos": {"relative_variation": [-0.2, 0.3], "count": [5, 20]},
          "neg": {"relative_variation": [0.1, -0.1], "count": [5, 20]}}  # fmt: skip
    r = _run(tmp_path / "m", "ml", [5, 20], [40.0, 60.0], lv, multi=True)
    assert main(["plot", str(r)]) == 0
    assert (r / "plots.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(r), "--out", str(tmp_path / "m.pdf")]) == 0
    first = (tmp_path / "m.pdf").read_bytes()
    assert first.startswith(b"%PDF")
    assert main(["plot", str(r), "--out", str(tmp_path / "m.pdf")]) == 0
    assert (tmp_path / "m.pdf").read_bytes() == first  # no timestamp: same data, same bytes
    capsys.readouterr()
    assert main(["plot", str(r), "--out", str(tmp_path / "m.jpg")]) == 2
    assert "must end in .png, .pdf or .svg" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_several_runs_plot_into_the_working_folder_and_mixed_label_kinds_are_refused(
    tmp_path, monkeypatch, capsys
):
    """Without --out one run is drawn into RUN/plots.png, several into ./plots.png (none of them owns the
    figure); single-label and multi-label runs have different panels and are not overlaid."""
    counts = [5, 20]
    lv = {"relative_variation": [0.1, -0.1], "count": counts}
    a = _run(tmp_path / "a", "a", counts, [40.0, 60.0], lv)
    b = _run(tmp_path / "b", "b", counts, [45.0, 65.0], lv)
    drawn = _capture(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(a), str(b)]) == 0
    assert drawn["path"] == Path("plots.png")
    assert main(["plot", str(a)]) == 0
    assert drawn["path"] == a / "plots.png"
    mlv = {p: {"relative_variation": [0.1, -0.1], "count": counts} for p in ("pos", "neg")}
    m = _run(tmp_path / "m", "m", counts, [40.0, 60.0], mlv, multi=True)
    capsys.readouterr()
    assert main(["plot", str(a), str(m)]) == 2
    assert "cannot overlay single-label and multi-label runs" in capsys.readouterr().err


def test_no_library_module_switches_the_matplotlib_backend():
    """matplotlib.use(...) in library code kills inline figures for the rest of a Jupyter session."""
    offenders = []
    for pkg in ("lpl_train", "lpl_theory"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                f = node.func
                if (f.attr == "use" and ast.unparse(f.value) in ("matplotlib", "mpl")) or (
                    f.attr == "switch_backend"
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_runs_with_different_classes_are_refused_in_either_order(tmp_path, monkeypatch, capsys):
    """Per-class panels overlay runs class by class: a 2-class and a 3-class run used to crash
    (IndexError) with the larger one first and silently drop classes with the smaller one first; runs
    with the same number of differently named classes (another dataset) are refused too."""
    two = _run(tmp_path / "two", "g", [20, 5], [90.0, 40.0],
               {"relative_variation": [0.1, -0.1], "count": [20, 5]})  # fmt: skip
    three = _run(tmp_path / "three", "f", [50, 10, 5], [70.0, 20.0, 10.0],
                 {"relative_variation": [0.1, 0.2, 0.3], "count": [50, 10, 5]})  # fmt: skip
    drawn = _capture(monkeypatch)
    for pair in ([three, two], [two, three]):
        capsys.readouterr()
        assert main(["plot", *map(str, pair), "--out", str(tmp_path / "p.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            "lpl-train: error: cannot overlay runs with different numbers of classes"
        )
        assert f"{str(two)!r}: 2 classes" in err and f"{str(three)!r}: 3 classes" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "path" not in drawn  # nothing drawn
    (three / "final.json").unlink()  # unfinished: the classes come from the recorded loss variation
    with pytest.raises(ValueError, match="different numbers of classes"):
        P.plot_runs([two, three], tmp_path / "p.png")
    other = _run(tmp_path / "other", "o", [20, 5], [80.0, 30.0],
                 {"relative_variation": [0.0, 0.0], "count": [20, 5]})  # fmt: skip
    for run, names in ((two, ["cat", "dog"]), (other, ["cat", "car"])):
        fin = json.loads((run / "final.json").read_text())
        (run / "final.json").write_text(json.dumps({**fin, "class_names": names}))
    with pytest.raises(
        ValueError, match=r"different classes \(class 1 is 'dog' in .* but 'car' in"
    ):
        P.plot_runs([two, other], tmp_path / "p.png")
    (other / "final.json").write_text(
        json.dumps(
            {**json.loads((other / "final.json").read_text()), "class_names": ["cat", "dog"]}
        )
    )
    assert P.plot_runs([two, other], tmp_path / "p.png") == tmp_path / "p.png"


def test_head_to_tail_breaks_ties_by_class_index():
    from lpl_train.plotting import head_to_tail

    assert head_to_tail([5, 9, 5, 9, 1]) == [1, 3, 0, 2, 4]
    assert head_to_tail(None, 3) == [0, 1, 2]


def test_a_saved_png_carries_no_software_version(tmp_path):
    from PIL import Image

    from lpl_train.plotting import new_figure, save_figure

    fig, axes = new_figure(1, (2, 2))
    axes[0, 0].plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "f.png", dpi=30)
    with Image.open(path) as im:
        assert "Software" not in im.info


def test_multilabel_curves_plot_map_by_epoch_number_and_both_variation_terms(tmp_path, monkeypatch):
    lv = {"pos": {"relative_variation": [-0.2, 0.3], "count": [5, 20]},
          "neg": {"relative_variation": [0.1, -0.1], "count": [5, 20]}}  # fmt: skip
    r = _run(tmp_path / "m", "ml", [5, 20], [40.0, 60.0], lv, multi=True)
    drawn = _capture(monkeypatch)
    P.plot_runs([r], tmp_path / "p.png")
    curves, test, _acc, var = drawn["axes"]
    assert list(curves.get_lines()[0].get_xdata()) == [1, 2]  # epochs 0 and 1 are the 1st and 2nd
    (line,) = test.get_lines()
    assert list(line.get_xdata()) == [1, 2] and list(line.get_ydata()) == [50.0, 49.0]  # test_map
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in var.get_lines()
             if not ln.get_label().startswith("_")}  # fmt: skip
    # (the zero line is unlabelled)
    # head → tail: class 1 (20 samples), then class 0; in percent
    assert lines == {
        "ml, pos": pytest.approx([30.0, -20.0]),
        "ml, neg": pytest.approx([-10.0, 10.0]),
    }


def test_the_variation_panel_uses_the_last_epoch_that_recorded_it_and_same_names_are_told_apart(
    tmp_path, monkeypatch
):
    counts = [5, 20]
    runs = []
    for folder in ("a", "b"):
        r = _run(tmp_path / folder, "lpl", counts, [40.0, 60.0], None)
        recs = [{"epoch": 0, "train_loss": 1.0, "test_top1_error": 9.0, "loss_variation": {"relative_variation": [0.9, 0.9]}},
                {"epoch": 1, "train_loss": 0.5, "test_top1_error": 8.0, "loss_variation": {"relative_variation": [0.1, 0.2]}},
                {"epoch": 2, "train_loss": 0.4, "test_top1_error": 7.0}]  # fmt: skip
        (r / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in recs))
        runs.append(r)
    drawn = _capture(monkeypatch)
    P.plot_runs(runs, tmp_path / "p.png")
    var = drawn["axes"][3]
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in var.get_lines()
             if not ln.get_label().startswith("_")}  # fmt: skip
    # (the zero line is unlabelled)
    assert lines == {"lpl (a)": pytest.approx([20.0, 10.0]), "lpl (b)": pytest.approx([20.0, 10.0])}


def test_an_unfinished_multilabel_run_is_read_as_multilabel(tmp_path):
    r = _run(tmp_path / "m", "ml", [5, 20], [40.0, 60.0], None, multi=True)
    (r / "final.json").unlink()  # still training: only its records tell the kind of labels
    assert P.load_run_data(r)["multi_label"] is True


def test_an_unfinished_run_is_ordered_by_its_training_counts(tmp_path):
    """An unfinished run's per-class axes follow the training counts that classes.json records when the
    run starts, not the counts of the samples its loss variation measured (every 10th step here, and a
    class-aware sampler's resampled batches): those are a sample, and need not be in the same order."""
    from lpl_train.config import load_config
    from lpl_train.engine import fit

    cfg = load_config(
        "gaussian_linear_lpl",
        ["data.sampler='class_aware'", "train.device='cpu'", "train.loss_variation_every=10"],
        epochs=2,
    )
    done, cut = tmp_path / "done", tmp_path / "cut"
    fit(cfg, done, log=lambda _: None)
    fit(cfg, cut, stop_after_epoch=1, log=lambda _: None)
    assert not (cut / "final.json").exists()
    final = json.loads((done / "final.json").read_text())
    classes = json.loads((cut / "classes.json").read_text())
    keys = ("multi_label", "num_classes", "class_counts", "class_names")
    assert classes == {k: final[k] for k in keys}
    measured = P.load_run_data(cut)["metrics"][-1]["loss_variation"]["count"]
    assert measured != final["class_counts"]  # the measured sample is not the training counts
    got = P.load_run_data(cut)
    assert got["class_counts"] == final["class_counts"] and got["num_classes"] == 2
    assert got["multi_label"] is False
    (cut / "classes.json").write_text("{")  # a damaged file is named
    with pytest.raises(ValueError, match=r"file '.*classes\.json' is not valid JSON"):
        P.load_run_data(cut)
    (cut / "classes.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"classes\.json' holds list, expected a JSON object"):
        P.load_run_data(cut)
    (cut / "config.toml").write_text("name = [")  # so is a damaged config.toml
    with pytest.raises(ValueError, match=r"file '.*config\.toml' is not valid TOML"):
        P.load_run_data(cut)


def test_the_multi_label_per_class_panel_draws_ap_head_to_tail(tmp_path, monkeypatch):
    """AP 40 and 60 of classes with 5 and 20 training samples: drawn 60 then 40 (the larger class first)."""
    r = _run(tmp_path / "m", "ml", [5, 20], [40.0, 60.0], None, multi=True)
    drawn = _capture(monkeypatch)
    P.plot_runs([r], tmp_path / "p.png")
    ap = drawn["axes"][2]
    (line,) = ap.get_lines()
    assert line.get_label() == "ml" and list(line.get_ydata()) == pytest.approx([60.0, 40.0])
    assert ap.get_ylabel() == "AP (%)"


def test_a_record_deleted_from_a_finished_run_is_named_and_resume_restores_it(tmp_path):
    """A metrics.jsonl with a line deleted by hand: plot names the missing epoch instead of drawing a
    curve across the gap, and the --resume it advises restores the record from the final checkpoint."""
    from lpl_train.config import load_config
    from lpl_train.engine import fit

    cfg = load_config("gaussian_linear_lpl", ["train.device='cpu'"], epochs=3)
    out = tmp_path / "r"
    fit(cfg, out, log=lambda _: None)
    path = out / "metrics.jsonl"
    whole = path.read_text()
    lines = whole.splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    with pytest.raises(
        ValueError, match=r"lacks the record of epoch 1 \(the next holds epoch 2\); resume"
    ):
        P.load_run_data(out)
    fit(cfg, out, resume=True, log=lambda _: None)
    assert path.read_text() == whole
    assert [m["epoch"] for m in P.load_run_data(out)["metrics"]] == [0, 1, 2]


def test_a_study_runs_evaluated_split_is_labelled_validation_and_not_overlaid_with_test(
    tmp_path, monkeypatch
):
    """A study run's engine evaluates the study's validation split where its records say "test": its
    panels say validation, and it is not drawn on one axis with a run evaluated on the test split."""
    from lpl_train.study_runs import engine_config

    counts, lv = [50, 10], {"relative_variation": [0.1, 0.2], "count": [50, 10]}
    s = _run(tmp_path / "s", "study", counts, [70.0, 20.0], lv)
    study = {"datasets": {"lt": {"name": "fmnist_lt"}}, "model": {"name": "cnn"}, "epochs": 1}
    spec = {"key": "lt/ce/s0", "dataset": "lt", "model_params": {}, "loss": "ce", "seed": 0}
    desc = engine_config(study, spec, {})["description"]
    (s / "config.toml").write_text(f'name = "study"\ndescription = "{desc}"\n')
    drawn = _capture(monkeypatch)
    P.plot_runs([s], tmp_path / "p.png")
    _curves, test, acc, _lv = drawn["axes"]
    assert test.get_title() == "evaluated validation metric"
    assert test.get_ylabel() == "validation top-1 error (%)"
    assert acc.get_title() == "final per-class validation accuracy"
    other = _run(tmp_path / "o", "ce", counts, [60.0, 10.0], lv)
    with pytest.raises(ValueError, match="cannot overlay study runs"):
        P.plot_runs([s, other], tmp_path / "p.png")
    P.plot_runs([other], tmp_path / "p.png")
    assert drawn["axes"][1].get_title() == "evaluated test metric"
