"""The study runner: grid expansion, validation-only selection, tables from hand-made records, and a tiny
end-to-end study on generated data (resumable, test set never used for selection)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lpl_train import study as S


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread is faster than two on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------- grids
def test_expand_grid_is_the_cartesian_product_in_key_order():
    assert S.expand_grid({}) == [{}]
    assert S.expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    with pytest.raises(ValueError, match="grid\\['a'\\]"):
        S.expand_grid({"a": []})
    with pytest.raises(TypeError):
        S.expand_grid("a=1")
    # the sweep's --grid pairs expand the same way
    assert S.expand_grid([("b", [1, 2])]) == [{"b": 1}, {"b": 2}]


def test_method_grid_balanced_override_and_first_mode():
    m = {"id": "x", "params": {"split": "index"}, "grid": {"eps": [1.5, 2.5]},
         "balanced": {"params": {"split": "mean"}, "grid": {"eps": [0.1, 0.2, 0.4]}}}  # fmt: skip
    assert S.method_grid(m, "longtail") == ({"split": "index"}, [{"eps": 1.5}, {"eps": 2.5}])
    assert S.method_grid(m, "balanced") == (
        {"split": "mean"},
        [{"eps": 0.1}, {"eps": 0.2}, {"eps": 0.4}],
    )
    assert S.method_grid(m, "balanced", "first") == ({"split": "mean"}, [{"eps": 0.1}])
    with pytest.raises(ValueError, match="regime"):
        S.method_grid(m, "imbalanced")


def test_shipped_study_plan_counts_every_grid_point_once_with_the_selection_seed():
    study = S.load_study()
    runs = S.plan_runs(study)
    expected = 0
    for ds in study["datasets"].values():
        want = "multilabel" if ds["regime"] == "multilabel" else "single"
        for m in study["methods"]:
            if m["regime"] == want:
                expected += len(S.method_grid(m, ds["regime"])[1])
    assert len(runs) == expected
    assert len({r["key"] for r in runs}) == len(runs)
    assert {r["seed"] for r in runs} == {study["select_seed"]}
    assert len(study["seeds"]) >= 3
    # every single-label method on each of the three single-label sets, every multi-label one on MLT
    single = {m["id"] for m in study["methods"] if m["regime"] == "single"}
    assert {
        "ce",
        "la",
        "ldam_drw",
        "focal",
        "cb_focal",
        "isda",
        "lpl_fixed",
        "lpl_varied",
        "la_lpl",
    } <= single
    for d in ("fmnist", "fmnist_lt100", "fmnist_lt10"):
        assert {r["method"] for r in runs if r["dataset"] == d} == single
    ml = {r["method"] for r in runs if r["dataset"] == "fmnist_ml_lt100"}
    assert {"bce", "rbce_focal", "rbce_focal_ntr", "rbce_focal_lc", "rbce_focal_lpl_fixed",
            "rbce_focal_lpl_varied"} <= ml  # fmt: skip
    chosen = {(r["dataset"], r["method"]): r["point"] for r in runs}
    finals = S.final_runs(study, chosen)
    assert len(finals) == len(chosen) * (len(study["seeds"]) - 1)
    assert study["select_seed"] not in {r["seed"] for r in finals}
    # seed by seed: a study stopped part-way leaves the same seeds for every method
    seeds = [r["seed"] for r in finals]
    assert seeds == sorted(seeds), seeds


def test_quick_mode_takes_the_quick_table():
    q = S.load_study(quick=True)
    assert q["quick"] is True and q["grid_mode"] == "first" and q["scale"] < 1
    assert q["epochs"] < S.load_study()["epochs"]
    assert all(len(S.method_grid(m, "longtail", "first")[1]) == 1 for m in q["methods"])


def test_restored_records_are_read_back_and_only_new_seeds_train(tmp_path):
    """`python -m lpl_train.ablation --restore`: the committed records written back into run folders make the
    study train only the runs they lack (a seed added to the definition), with the same selection."""
    import torch

    from lpl_train.study_runs import restore_records

    torch.set_num_threads(1)
    study = _tiny_study(tmp_path)
    study["methods"] = study["methods"][:1]  # CE only: two runs
    recs = S.run_study(study, tmp_path / "a", jobs=1, log=lambda s: None)
    assert restore_records(recs, tmp_path / "b") == 2
    assert restore_records(recs, tmp_path / "b") == 0  # the same records again: nothing to write
    study["seeds"] = [0, 1, 2]
    logs: list[str] = []
    more = S.run_study(study, tmp_path / "b", jobs=1, log=logs.append)
    assert sorted(r["seed"] for r in more) == [0, 1, 2]
    assert [r for r in more if r["seed"] < 2] == sorted(recs, key=lambda r: r["seed"])
    trained = [line for line in logs if "test error" in line]
    assert len(trained) == 1 and "seed2" in trained[0], logs
    other = dict(recs[0], epochs=99)
    with pytest.raises(ValueError, match="different record"):
        restore_records([other], tmp_path / "b")
    for key in (None, "", "../x", "/abs/seed0"):
        with pytest.raises(ValueError, match="relative 'key'"):
            restore_records([dict(recs[0], key=key)], tmp_path / "c")


def test_study_train_table_reaches_every_run_and_refuses_other_keys(tmp_path):
    from lpl_train.study_runs import engine_config

    study = _tiny_study(tmp_path)
    spec = S.plan_runs(study)[0]
    assert engine_config(study, spec, {})["train"]["loss_variation_every"] == 1
    study["train"] = {"compile": True, "loss_variation_every": 10}
    tr = engine_config(study, spec, {})["train"]
    assert tr["compile"] is True and tr["loss_variation_every"] == 10 and tr["seed"] == spec["seed"]
    p = tmp_path / "tiny.toml"
    text = p.read_text()
    p.write_text(text + "\n[train]\nseed = 3\n")
    with pytest.raises(ValueError, match=r"\[train\] may set only .*'seed'"):
        S.load_study(p)
    p.write_text(text.replace('name = "tiny"', 'name = "tiny"\ntrain = 3'))
    with pytest.raises(ValueError, match=r"\[train\]"):
        S.load_study(p)


def test_another_study_reports_into_its_out_folder_never_figures(tmp_path):
    """Only the shipped study writes into figures/ by default; another study would overwrite its tables."""
    import argparse

    from lpl_train.study_cli import _paths

    study = _tiny_study(tmp_path)
    a = argparse.Namespace(out=str(tmp_path / "o"), figures=None, quick=False)
    assert _paths(a, study)[1] == tmp_path / "o"
    a.figures = str(tmp_path / "f")
    assert _paths(a, study)[1] == tmp_path / "f"
    shipped = S.load_study(None)
    assert _paths(argparse.Namespace(out=None, figures=None, quick=False), shipped)[1] == Path(
        "figures"
    )
    assert _paths(argparse.Namespace(out=None, figures=None, quick=True), shipped)[1] == Path(
        "runs/study-quick"
    )


def test_study_definition_errors_name_the_key(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('name="x"\nseeds=[0]\nselect_seed=1\nval_fraction=0.2\nepochs=2\n'
                   "datasets={}\nmethods=[]\n")  # fmt: skip
    with pytest.raises(ValueError, match="select_seed"):
        S.load_study(bad)
    bad.write_text(
        'name="x"\nseeds=[0]\nselect_seed=0\nval_fraction=1.5\nepochs=2\ndatasets={}\nmethods=[]\n'
    )
    with pytest.raises(ValueError, match="val_fraction"):
        S.load_study(bad)
    with pytest.raises(FileNotFoundError):
        S.load_study(tmp_path / "missing.toml")


def test_resolve_params_fills_placeholders():
    assert S.resolve_params({"a": "$num_train", "b": 1, "c": "rbce"}, {"num_train": 7}) == {
        "a": 7,
        "b": 1,
        "c": "rbce",
    }
    with pytest.raises(ValueError, match="unknown"):
        S.resolve_params({"a": "$nope"}, {"num_train": 7})


def test_point_slug():
    assert S.point_slug({}) == "default"
    assert S.point_slug({"epsilon": 1.5, "tau": 0.5}) == "epsilon=1.5,tau=0.5"


# --------------------------------------------------------------------------------------- selection
def _rec(dataset, method, point, seed, val_acc, test_acc, ml=False):
    r = {"dataset": dataset, "method": method, "point": point, "seed": seed, "multi_label": ml,
         "key": f"{dataset}/{method}/{S.point_slug(point)}/seed{seed}",
         "class_counts": [100, 80, 60, 40, 30, 20, 15, 10, 5, 1]}  # fmt: skip
    if ml:
        r["val"] = {"map": val_acc}
        r["test"] = {"map": test_acc, "ap_per_class": [test_acc] * 10}
    else:
        r["val"] = {"per_class_acc": [val_acc] * 10}
        r["test"] = {"top1_error": 100 - test_acc, "per_class_acc": [test_acc] * 10}
    return r


def test_selection_reads_validation_only_never_test():
    # point A: better on validation, worse on test; B the opposite. A must be chosen.
    recs = [
        _rec("d", "m", {"eps": 1}, 0, val_acc=90, test_acc=50),
        _rec("d", "m", {"eps": 2}, 0, val_acc=80, test_acc=99),
        _rec("ml", "n", {"eps": 1}, 0, val_acc=40, test_acc=90, ml=True),
        _rec("ml", "n", {"eps": 2}, 0, val_acc=60, test_acc=10, ml=True),
    ]
    assert S.select_best(recs) == {("d", "m"): {"eps": 1}, ("ml", "n"): {"eps": 2}}
    # the balanced validation error is the mean of the per-class errors, not the overall error
    r = _rec("d", "m", {}, 0, 0, 0)
    r["val"] = {"per_class_acc": [100.0, 50.0, None, 0.0] + [50.0] * 6, "top1_error": 1.0}
    assert S.validation_score(r) == pytest.approx(100 - (150 + 300) / 9)
    # ties go to the point whose slug sorts first, whatever the order the runs finished in
    tie = [_rec("d", "m", {"eps": 1}, 0, 70, 0), _rec("d", "m", {"eps": 2}, 0, 70, 100)]
    assert S.select_best(tie) == {("d", "m"): {"eps": 1}}
    assert S.select_best(tie[::-1]) == {("d", "m"): {"eps": 1}}
    with pytest.raises(ValueError, match="no 'val'"):
        S.validation_score({"key": "x", "test": {}})


def test_class_groups_by_rank():
    counts = [6000, 3597, 2156, 1292, 774, 464, 278, 167, 100, 60]
    assert S.class_groups_by_rank(counts) == {
        "many": [0, 1, 2],
        "medium": [3, 4, 5, 6],
        "few": [7, 8, 9],
    }
    # ranks, not indices: a permuted order gives the permuted groups; ties by index
    assert S.class_groups_by_rank([1, 5, 5, 3], (0.25, 0.25)) == {
        "many": [1],
        "medium": [2, 3],
        "few": [0],
    }
    with pytest.raises(ValueError, match="fractions"):
        S.class_groups_by_rank(counts, (0.6, 0.6))
    with pytest.raises(ValueError, match="class_counts"):
        S.class_groups_by_rank([])


# ------------------------------------------------------------------------------------------ tables
def _study():
    return {
        "name": "t", "quick": False, "seeds": [0, 1], "select_seed": 0, "epochs": 2, "val_fraction": 0.2,
        "model": {"name": "linear"}, "group_fractions": [0.3, 0.3],
        "datasets": {"lt": {"label": "LT", "regime": "longtail"}, "ml": {"label": "MLT", "regime": "multilabel"}},
        "methods": [{"id": "ce", "label": "CE", "regime": "single"},
                    {"id": "lpl_varied", "label": "LPL", "regime": "single"},
                    {"id": "bce", "label": "BCE", "regime": "multilabel"}],
    }  # fmt: skip


def _hand_records():
    acc0 = [90.0, 90, 90, 80, 80, 80, 80, 10, 20, 30]  # many 90, medium 80, few 20
    acc1 = [94.0, 94, 94, 70, 70, 70, 70, 30, 40, 50]  # many 94, medium 70, few 40
    recs = []
    for seed, acc, err in ((0, acc0, 30.0), (1, acc1, 34.0)):
        r = _rec("lt", "ce", {}, seed, 50, 0)
        r["test"] = {"top1_error": err, "per_class_acc": acc}
        recs.append(r)
    for seed, err in ((0, 20.0), (1, 22.0)):
        r = _rec("lt", "lpl_varied", {"delta_epsilon": 2.0}, seed, 60, 0)
        r["test"] = {"top1_error": err, "per_class_acc": [80.0] * 10}
        recs.append(r)
    # a grid point that lost on validation: its (better) test numbers must not reach the table
    recs.append(_rec("lt", "lpl_varied", {"delta_epsilon": 1.0}, 0, 55, 99))
    for seed, ap in (
        (0, [60.0] * 3 + [50.0] * 4 + [None, 30.0, 20.0]),
        (1, [62.0] * 3 + [52.0] * 4 + [40, 30, 20]),
    ):
        r = _rec("ml", "bce", {}, seed, 50, 0, ml=True)
        r["test"] = {"map": 0.0, "ap_per_class": ap}
        recs.append(r)
    return recs


def test_summary_and_tables_from_hand_made_records(tmp_path):
    study, recs = _study(), _hand_records()
    summ = S.summarize(recs, study)
    ce = summ[("lt", "ce")]
    assert ce["n"] == 2 and ce["seeds"] == [0, 1]
    assert ce["overall"] == pytest.approx((32.0, math.sqrt(8.0)))  # 30, 34: std (ddof 1) = 2.83
    assert ce["many"] == pytest.approx((8.0, math.sqrt(8.0)))  # errors 10 and 6
    assert ce["medium"] == pytest.approx((25.0, math.sqrt(50.0)))  # 20 and 30
    assert ce["few"] == pytest.approx((70.0, math.sqrt(200.0)))  # 80 and 60
    lpl = summ[("lt", "lpl_varied")]
    assert lpl["point"] == {"delta_epsilon": 2.0} and lpl["overall"] == pytest.approx(
        (21.0, math.sqrt(2))
    )
    ml = summ[("ml", "bce")]
    # seed 0: AP of class 7 missing -> total mean of 9 classes; tail = classes 7-9
    t0, t1 = (180 + 200 + 50) / 9, (186 + 208 + 90) / 10
    assert ml["total"][0] == pytest.approx((t0 + t1) / 2)
    assert ml["head"][0] == pytest.approx(61.0) and ml["medium"][0] == pytest.approx(51.0)
    assert ml["tail"][0] == pytest.approx((25.0 + 30.0) / 2)

    md = S.format_tables(summ, study)
    lines = md.splitlines()
    assert "### LT — test top-1 error (%)" in lines
    assert "| Method | overall | many | medium | few | selected | seeds |" in lines
    assert "| CE | 32.00 ± 2.83 | 8.00 ± 2.83 | 25.00 ± 7.07 | 70.00 ± 14.14 | – | 2 |" in lines
    assert (
        "| LPL | 21.00 ± 1.41 | 20.00 ± 0.00 | 20.00 ± 0.00 | 20.00 ± 0.00 | delta_epsilon=2.0 | 2 |"
        in lines
    )
    assert "| Method | total | head | medium | tail | selected | seeds |" in lines
    text = "\n".join(S.claims(summ, study))
    assert "LT: LPL (varied ε_c) beats CE — held (error 21.00 vs 32.00)." in text
    assert (
        "LPL lowers the few-shot (tail) error relative to CE — held (error 20.00 vs 70.00)" in text
    )

    path = S.write_outputs(recs, study, tmp_path, "study-t")
    assert path.name == "study-t-tables.md" and "| CE | 32.00 ± 2.83" in path.read_text()
    back = S.read_records(tmp_path / "study-t-runs.jsonl")
    assert len(back) == len(recs) and {r["key"] for r in back} == {r["key"] for r in recs}


# ------------------------------------------------------------------------------------- end to end
def _tiny_study(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text("""
name = "tiny"
seeds = [0, 1]
select_seed = 0
val_fraction = 0.25
epochs = 2
batch_size = 64
[model]
name = "linear"
params = {in_features = 2}
[optim]
name = "sgd"
lr = 0.1
momentum = 0.9
[schedule]
kind = "constant"
[datasets.g]
label = "Gaussian"
name = "gaussian"
regime = "longtail"
params = {gamma = 4.0, num_train = 400, num_test = 400}
[[methods]]
id = "ce"
regime = "single"
loss = "ce"
[[methods]]
id = "lpl_varied"
regime = "single"
loss = "lpl"
params = {split = "index", tau = 1, epsilon = 0.0, alpha = 0.1}
grid = {delta_epsilon = [0.5, 1.0]}
""")
    return S.load_study(p)


def test_tiny_study_end_to_end_is_resumable(tmp_path):
    import torch

    torch.set_num_threads(1)
    study = _tiny_study(tmp_path)
    logs: list[str] = []
    recs = S.run_study(study, tmp_path / "out", jobs=1, log=logs.append)
    # 1 + 2 selection runs, then seed 1 of the two chosen points
    assert len(recs) == 5 and sum(r["seed"] == 1 for r in recs) == 2
    assert any(line.startswith("selected on validation: g/lpl_varied") for line in logs)
    for r in recs:
        assert r["num_val"] == 100 and r["num_train"] == 300
        assert r["class_counts"] == [240, 60]
        assert len(r["loss_variation"]) == 2 and len(r["test"]["per_class_acc"]) == 2
        assert 0 <= r["test"]["top1_error"] <= 100
    ce = [r for r in recs if r["method"] == "ce"][0]
    assert ce["loss_variation"][0]["relative_variation"] == pytest.approx([0.0, 0.0], abs=1e-6)
    # the varied-bound LPL raises the tail loss and lowers the head loss (Eq. 29: tail positively augmented)
    lv = [r for r in recs if r["method"] == "lpl_varied"][0]["loss_variation"][-1][
        "relative_variation"
    ]
    assert lv[0] < 0 < lv[1]
    # a second call reads every finished run back instead of training it again
    before = {
        r["key"]: (tmp_path / "out" / "runs" / r["key"] / "result.json").stat().st_mtime_ns
        for r in recs
    }
    again = S.run_study(study, tmp_path / "out", jobs=1, log=lambda s: None)
    after = {
        r["key"]: (tmp_path / "out" / "runs" / r["key"] / "result.json").stat().st_mtime_ns
        for r in again
    }
    assert before == after
    assert json.dumps(sorted(again, key=lambda r: r["key"])) == json.dumps(
        sorted(recs, key=lambda r: r["key"])
    )
    summ = S.summarize(recs, study)
    assert summ[("g", "ce")]["n"] == 2
    # the study's run folders are ordinary run folders: `lpl-train report` pools their seeds, on test metrics
    from lpl_train.report import aggregate, collect_runs

    rows = {r.label: r for r in aggregate(collect_runs(tmp_path / "out"))}
    ce = rows["g__ce__default"]
    assert ce.seeds == [0, 1] and ce.best == {}
    assert ce.final["top1_error"] == pytest.approx(summ[("g", "ce")]["overall"])


def test_a_diverged_run_is_recorded_and_never_selected(tmp_path):
    study = _tiny_study(tmp_path)
    study["optim"]["lr"] = 1e38  # the weights overflow to inf within a few steps
    spec = S.plan_runs(study)[0]
    rec = S.run_one(study, spec, tmp_path / "out")
    assert "non-finite" in rec["diverged"] and rec["test"] is None
    assert S.validation_score(rec) == math.inf
    ok = {**rec, "diverged": None, "point": {"x": 1}, "val": {"per_class_acc": [10.0, 10.0]}}
    assert S.select_best([rec, ok])[(rec["dataset"], rec["method"])] == {"x": 1}
    # read back on a second call, not trained again
    assert S.run_one(study, spec, tmp_path / "out") == json.loads(json.dumps(rec))


def test_claims_flag_differences_within_the_seed_noise():
    study = _study()
    summ = {("lt", "lpl_varied"): {"overall": (20.0, 1.0)}, ("lt", "ce"): {"overall": (21.0, 1.0)}}
    (line,) = S.claims(summ, study)
    # |20 - 21| = 1 < sqrt(1 + 1) = 1.41: neither "held" nor "did not hold"
    assert line == ("- LT: LPL (varied ε_c) beats CE — not established: the difference is within the seed "
                    "noise (error 20.00 vs 21.00, |Δ| 1.00 < 1.41; the means favour the claim).")  # fmt: skip
    assert "held" not in line
    summ[("lt", "ce")] = {"overall": (19.5, 0.5)}  # |0.5| < sqrt(1.25) = 1.12, the means against it
    (line,) = S.claims(summ, study)
    assert line.endswith("(error 20.00 vs 19.50, |Δ| 0.50 < 1.12; the means go against the claim).")
    assert "held" not in line
    summ[("lt", "ce")] = {"overall": (23.0, 1.0)}
    assert S.claims(summ, study) == [
        "- LT: LPL (varied ε_c) beats CE — held (error 20.00 vs 23.00)."
    ]


# ------------------------------------------------------------------------- committed results
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


RECORDS = ROOT / "lpl_train" / "configs" / "study" / "fmnist-runs.jsonl"


def test_committed_tables_are_those_of_the_committed_runs(tmp_path):
    """figures/study-tables.md is exactly what `lpl-train study --report-only` writes from the committed
    records (shipped beside the study file), through the report code."""
    study = S.load_study()
    assert S.shipped_records(study) == RECORDS
    path = S.write_tables(S.read_records(RECORDS), study, tmp_path, "study")
    committed = (ROOT / "figures" / "study-tables.md").read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8") == committed


def _independent_summary() -> dict[tuple[str, str], tuple[float, float]]:
    """Mean ± std of the test score per (dataset, method), selection redone here from the raw JSONL:
    seed-0 runs, lowest balanced validation error (highest validation mAP), then every seed at that point."""
    import statistics

    records = [json.loads(x) for x in RECORDS.read_text(encoding="utf-8").splitlines()]
    best: dict[tuple[str, str], tuple[float, dict]] = {}
    for r in records:
        if r["seed"] != 0:
            continue
        v = r["val"]
        score = -v["map"] if r["multi_label"] else -statistics.fmean(v["per_class_acc"])
        k = (r["dataset"], r["method"])
        if k not in best or score < best[k][0]:
            best[k] = (score, r["point"])
    out = {}
    for k, (_, point) in best.items():
        vals = [
            statistics.fmean(a for a in r["test"]["ap_per_class"] if a is not None)
            if r["multi_label"]
            else r["test"]["top1_error"]
            for r in records
            if (r["dataset"], r["method"]) == k and r["point"] == point
        ]
        assert len(vals) == 3, k
        out[k] = (statistics.fmean(vals), statistics.stdev(vals))
    return out


def test_readme_and_docs_numbers_are_the_committed_runs():
    """Every 'mean ± std' quoted in the README's results section and in docs/study.md's results is a cell
    recomputed here from figures/study-runs.jsonl (selection on validation only)."""
    import re

    cells = {f"{m:.2f} ± {s:.2f}" for m, s in _independent_summary().values()}
    tables = (ROOT / "figures" / "study-tables.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = readme.split("## Results on this machine", 1)[1].split("\n## ", 1)[0]
    docs = (ROOT / "docs" / "study.md").read_text(encoding="utf-8").split("## Results", 1)[1]
    for where, text in (("README.md", results), ("docs/study.md", docs)):
        quoted = re.findall(r"\d+\.\d\d ± \d+\.\d\d", text)
        assert len(quoted) >= 20, where
        for (
            q
        ) in quoted:  # overall/mAP cells recomputed here; group cells from the regenerated tables
            assert q in cells or q in tables, (
                f"{where} quotes {q}, not a cell of the committed runs"
            )
    overall = [c for c in cells if c in results]
    assert len(overall) >= 27  # the 21 single-label cells and 7 multi-label totals of the README


def test_loss_variation_figures_plot_the_selected_point_and_the_stated_measurement(
    tmp_path, monkeypatch
):
    """Fig. 1: LA from its per-epoch training variation averaged over epochs and seeds of the point chosen on
    validation; LDAM from the margin alone on the trained model (isolated_variation), not its training
    variation. Fig. 2: NTR's isolated pos/neg terms. Checked on the drawn lines (values in percent)."""
    study = S.load_study()
    c = 10

    def rec(d, m, point, seed, val_acc, epochs=(), iso=None, ml=False):
        r = {"dataset": d, "method": m, "point": point, "seed": seed, "multi_label": ml,
             "val": {"map": val_acc} if ml else {"per_class_acc": [val_acc] * c},
             "loss_variation": [{"relative_variation": [v] * c} for v in epochs]}  # fmt: skip
        if iso is not None:
            r["isolated_variation"] = iso
        return r

    pn = {"pos": {"relative_variation": [0.02] * c}, "neg": {"relative_variation": [-0.4] * c}}
    records = [
        rec("fmnist_lt100", "la", {"tau": 0.5}, 0, 50.0, epochs=(9.0,)),  # loses on validation
        rec("fmnist_lt100", "la", {"tau": 1.0}, 0, 60.0, epochs=(0.1, 0.3)),  # chosen
        rec("fmnist_lt100", "la", {"tau": 1.0}, 1, 0.0, epochs=(0.5,)),  # another seed, same point
        rec(
            "fmnist_lt100",
            "ldam_drw",
            {"max_m": 0.3},
            0,
            60.0,
            epochs=(7.0,),
            iso={"relative_variation": [2.5] * c},
        ),  # fmt: skip
        rec("fmnist_ml_lt100", "rbce_focal_ntr", {"neg_scale": 5.0}, 0, 40.0, iso=pn, ml=True),
    ]
    drawn = {}

    def capture(fig, path):
        drawn[path.name] = [
            {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()} for ax in fig.axes
        ]
        return path

    from lpl_train import study_figures

    monkeypatch.setattr(study_figures, "save_figure", capture)
    S.loss_variation_figures(records, study, tmp_path)
    lt100 = drawn["fig1-loss-variation.png"][1]  # panels: balanced, LT 100:1, LT 10:1
    # LA: epochs 0.1, 0.3 (seed 0) and 0.5 (seed 1) at tau=1.0 -> mean 0.3 -> 30 %
    assert lt100["LA (training)"] == pytest.approx([30.0] * c)
    assert lt100["LDAM margin (trained model)"] == pytest.approx([250.0] * c)
    ntr = drawn["fig2-loss-variation.png"][0]
    assert ntr["NTR alone, pos (trained model)"] == pytest.approx([2.0] * c)
    assert ntr["NTR alone, neg (trained model)"] == pytest.approx([-40.0] * c)
