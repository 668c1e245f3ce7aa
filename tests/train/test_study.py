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


def test_a_study_restored_from_sorted_jsonl_records_trains_nothing_again(tmp_path):
    """A records file is written with sorted keys, so a point of a two-key grid comes back with its keys in
    another order than the grid's, which names the run folders. Restored and resumed, the study must find
    every run (the chosen point's other seeds included) instead of training them again under a second name."""
    import torch

    from lpl_train.study_runs import restore_records

    torch.set_num_threads(1)
    study = _tiny_study(tmp_path)
    lpl = study["methods"][1]
    del lpl["params"]["alpha"]
    lpl["grid"] = {"delta_epsilon": [0.5, 1.0], "alpha": [0.1]}  # grid order is not sorted order
    study["methods"] = [lpl]
    recs = S.run_study(study, tmp_path / "a", jobs=1, log=lambda s: None)
    assert len(recs) == 3 and all(r["key"].split("/")[2].startswith("delta_epsilon=") for r in recs)
    stored = [json.loads(json.dumps(r, sort_keys=True)) for r in recs]
    assert all(list(r["point"]) == ["alpha", "delta_epsilon"] for r in stored)
    assert restore_records(stored, tmp_path / "b") == 3
    logs: list[str] = []
    again = S.run_study(study, tmp_path / "b", jobs=1, log=logs.append)
    assert not [line for line in logs if "test error" in line], logs
    assert sorted(r["key"] for r in again) == sorted(r["key"] for r in recs)
    chosen = next(r for r in recs if r["seed"] == 1)["point"]
    assert f"selected on validation: g/lpl_varied: {S.point_slug(chosen)}" in logs


def test_grid_order_puts_a_points_keys_in_the_grids_order():
    grid = [{"delta_epsilon": 1.0, "alpha": 0.1}]
    ordered = S.grid_order({"alpha": 0.1, "delta_epsilon": 9.0}, grid)
    assert list(ordered) == ["delta_epsilon", "alpha"] and ordered == {
        "alpha": 0.1,
        "delta_epsilon": 9.0,
    }
    # keys the grid lacks keep their own order, after the grid's; an empty grid changes nothing
    assert list(S.grid_order({"z": 1, "alpha": 2, "b": 3}, grid)) == ["alpha", "z", "b"]
    assert list(S.grid_order({"z": 1, "b": 3}, [{}])) == ["z", "b"]


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
                   'datasets={}\nmethods=[]\nmodel={name="linear"}\n')  # fmt: skip
    with pytest.raises(ValueError, match="select_seed"):
        S.load_study(bad)
    bad.write_text(
        'name="x"\nseeds=[0]\nselect_seed=0\nval_fraction=1.5\nepochs=2\ndatasets={}\nmethods=[]\n'
        'model={name="linear"}\n'
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
    # ... whatever the order of a point's keys: the grid's (a study's own runs) or sorted (a JSONL file)
    tie2 = [
        _rec("d", "m", {"b": 1, "a": 2}, 0, 70, 0),
        _rec("d", "m", {"b": 2, "a": 1}, 0, 70, 100),
    ]
    stored = [json.loads(json.dumps(r, sort_keys=True)) for r in tie2]
    assert S.select_best(tie2) == S.select_best(stored) == {("d", "m"): {"a": 1, "b": 2}}
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
    # 0.3 of 5 classes is 1.5: rounded half to even, 2 classes at each end (as with 12 classes: 3.6 → 4)
    assert S.class_groups_by_rank([50, 40, 30, 20, 10]) == {
        "many": [0, 1], "medium": [2], "few": [3, 4]}  # fmt: skip
    assert len(S.class_groups_by_rank(list(range(12, 0, -1)))["many"]) == 4
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


def test_records_of_another_study_mode_or_definition_are_refused_not_reported(tmp_path):
    """A JSONL file of another study (or two studies joined) shares dataset and method ids with this one:
    its runs were selected and averaged under this study's header (or a method this study lacks stopped
    the report with a bare StopIteration)."""
    study = _study()
    recs = [dict(r, study="t", quick=False, epochs=2) for r in _hand_records()]
    S.write_tables(recs, study, tmp_path / "ok", "t")  # the study's own records
    for field, value in (("study", "other"), ("quick", True), ("epochs", 48)):
        bad = recs[:-1] + [dict(recs[-1], **{field: value})]
        with pytest.raises(ValueError, match=f"with {field} .*not the {field}"):
            S.write_tables(bad, study, tmp_path / field, "t", records_path=tmp_path / "x.jsonl")
        with pytest.raises(ValueError, match="records of another study"):
            S.summarize(bad, study)
    stray = [*recs, dict(_rec("lt", "ldam", {}, 0, 50, 50), study="t")]
    with pytest.raises(ValueError, match="does not define: lt/ldam"):
        S.write_tables(stray, study, tmp_path / "stray", "t")


def test_a_diverged_seed_is_named_in_the_table_not_silently_dropped(tmp_path):
    """A final run that diverged has no test metrics: the mean is over the other seeds, and the seeds
    column says which seed diverged (it showed a bare "1", as if the seed had never been run); a point
    where every seed diverged keeps its row."""
    study, recs = _study(), _hand_records()

    def diverge(r):
        return {**r, "diverged": "loss became NaN", "val": None, "test": None}

    recs = [diverge(r) if (r["method"], r["seed"]) == ("lpl_varied", 1) else r for r in recs]
    recs = [diverge(r) if r["method"] == "ce" else r for r in recs]
    summ = S.summarize(recs, study)
    assert summ[("lt", "lpl_varied")]["n"] == 1 and summ[("lt", "lpl_varied")]["diverged"] == [1]
    lines = S.format_tables(summ, study).splitlines()
    assert (
        "| LPL | 20.00 | 20.00 | 20.00 | 20.00 | delta_epsilon=2.0 | 1 (seed 1 diverged) |" in lines
    )
    assert "| CE | – | – | – | – | – | 0 (seeds 0, 1 diverged) |" in lines
    assert S.claims(summ, study) == []  # nothing to compare with: no verdict on a diverged method


def test_a_selected_value_at_an_end_of_its_grid_is_marked_edge_in_the_study_tables():
    """The project's rule: a hyper-parameter chosen at the edge of its grid means the grid was too small.
    The study tables printed the selected point with no mark (24 of the 27 searched points of the
    committed study sit on an end of their grid)."""
    from lpl_train.report.tables import selected_cell

    m = {"id": "m", "grid": {"a": [0.01, 0.1, 1.0, 10.0], "b": [3, 1, 2]}, "grid_floor": {"a": 0.01},
         "balanced": {"grid": {"a": [0.5, 1.0]}}}  # fmt: skip
    assert selected_cell({"a": 0.1, "b": 2}, m, "longtail") == "a=0.1, b=2"
    assert selected_cell({"a": 10.0, "b": 2}, m, "longtail") == "a=10.0 (EDGE), b=2"
    assert selected_cell({"a": 1.0, "b": 1}, m, "longtail") == "a=1.0, b=1 (EDGE)"  # unsorted axis
    assert selected_cell({"a": 1.0, "b": 3}, m, "longtail") == "a=1.0, b=3 (EDGE)"
    assert selected_cell({"a": 0.01, "b": 2}, m, "longtail") == "a=0.01 (floor), b=2"
    assert selected_cell({"a": 0.5}, m, "balanced") == "a=0.5 (EDGE)"  # the balanced grid
    assert selected_cell({"a": 0.5}, m, "balanced", grid_mode="first") == "a=0.5"  # no search
    assert selected_cell({}, m, "longtail") == "–"
    # a value a narrowed grid no longer has (records of the wider one): marked, not shown as interior
    assert selected_cell({"a": 3.0, "b": 2}, m, "longtail") == "a=3.0 (not in the grid), b=2"
    assert selected_cell({"a": 20.0, "b": 2}, m, "longtail") == "a=20.0 (not in the grid), b=2"
    assert selected_cell({"c": 5}, m, "longtail") == "c=5"  # not searched: nothing to say
    study = {**_study(), "methods": [{"id": "lpl_varied", "label": "LPL", "regime": "single",
                                      "grid": {"delta_epsilon": [1.0, 2.0]}}]}  # fmt: skip
    summ = S.summarize([r for r in _hand_records() if r["method"] == "lpl_varied"], study)
    assert "| delta_epsilon=2.0 (EDGE) | 2 |" in S.format_tables(summ, study)


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


def test_a_run_finished_but_not_yet_recorded_is_evaluated_with_its_trained_weights(
    tmp_path, monkeypatch
):
    """A crash after the engine wrote final.json and before the study wrote result.json: the next call
    resumes the run, fit returns it as finished and gives the components its last weights, so the
    record's test numbers are those of the trained model (they were a fresh model's)."""
    import torch

    from lpl_train import engine

    torch.set_num_threads(1)
    study = _tiny_study(tmp_path)
    spec = S.plan_runs(study)[0]
    clean = S.run_one(study, spec, tmp_path / "clean")
    real = engine.evaluate

    def crash(*a, **k):
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(engine, "evaluate", crash)
    with pytest.raises(KeyboardInterrupt):
        S.run_one(study, spec, tmp_path / "crashed")
    run_dir = tmp_path / "crashed" / "runs" / spec["key"]
    assert (run_dir / "final.json").is_file() and not (run_dir / "result.json").exists()
    monkeypatch.setattr(engine, "evaluate", real)
    again = S.run_one(study, spec, tmp_path / "crashed")
    assert again["test"] == clean["test"] and again["val"] == clean["val"]


def test_a_record_of_another_study_definition_is_refused_not_read_back(tmp_path):
    """A study called again into the same --out after its definition changed (epochs, learning rate):
    the finished run's record names what differs instead of standing in for the new run; more seeds or
    another description read it back as before."""
    import torch

    torch.set_num_threads(1)
    study = _tiny_study(tmp_path)
    spec = S.plan_runs(study)[0]
    rec = S.run_one(study, spec, tmp_path / "out")
    assert rec["definition"]["epochs"] == 2 and rec["definition"]["seed"] == 0
    changed = {**study, "epochs": 3, "optim": {**study["optim"], "lr": 0.5}}
    with pytest.raises(
        ValueError, match=r"another definition of the study \(it differs in epochs, optim\)"
    ):
        S.run_one(changed, spec, tmp_path / "out")
    same_runs = {**study, "seeds": [0, 1, 2], "description": "more seeds"}
    assert S.run_one(same_runs, spec, tmp_path / "out") == rec
    legacy = {
        k: v for k, v in rec.items() if k != "definition"
    }  # a committed record: no definition
    (tmp_path / "out" / "runs" / spec["key"] / "result.json").write_text(json.dumps(legacy))
    assert S.run_one(changed, spec, tmp_path / "out") == legacy


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
    # exactly at the noise: established (|Δ| = 1 is not < sqrt(0.6² + 0.8²) = 1, both exact)
    summ = {("lt", "lpl_varied"): {"overall": (20.0, 0.6)}, ("lt", "ce"): {"overall": (21.0, 0.8)}}
    assert S.claims(summ, study)[0].startswith("- LT: LPL (varied ε_c) beats CE — held")
    # one seed on a side (std None: a stopped study, a diverged seed): never "held" or "did not hold"
    summ = {("lt", "lpl_varied"): {"overall": (20.0, None)}, ("lt", "ce"): {"overall": (29.0, 1.0)}}
    assert S.claims(summ, study) == [
        "- LT: LPL (varied ε_c) beats CE — not established: one seed, no spread to compare the "
        "difference with (error 20.00 vs 29.00; the means favour the claim)."
    ]
    # equal means: within any spread, and on neither side of the claim
    summ = {("lt", "lpl_varied"): {"overall": (20.0, 1.0)}, ("lt", "ce"): {"overall": (20.0, 0.5)}}
    assert S.claims(summ, study)[0].endswith(
        "(error 20.00 vs 20.00, |Δ| 0.00 < 1.12; the means are equal: neither favour nor go against the "
        "claim)."
    )
    # equal means without any spread (the same runs): a claim that one beats the other did not hold
    summ = {("lt", "lpl_varied"): {"overall": (20.0, 0.0)}, ("lt", "ce"): {"overall": (20.0, 0.0)}}
    assert S.claims(summ, study) == [
        "- LT: LPL (varied ε_c) beats CE — did not hold (error 20.00 vs 20.00)."
    ]


# ------------------------------------------------------------------------- committed results
ROOT = Path(__file__).resolve().parents[2]


RECORDS = ROOT / "lpl_train" / "configs" / "study" / "fmnist-runs.jsonl"


def test_committed_tables_are_those_of_the_committed_runs(tmp_path):
    """figures/study-tables.md is exactly what `lpl-train study --report-only` writes from the committed
    records (shipped beside the study file), through the report code."""
    study = S.load_study()
    assert S.shipped_records(study) == RECORDS
    path = S.write_tables(S.read_records(RECORDS), study, tmp_path, "study", records_path=RECORDS)
    assert "Raw runs: `lpl_train/configs/study/fmnist-runs.jsonl`. Redraw: `lpl-train study fmnist " in (
        path.read_text(encoding="utf-8"))  # fmt: skip
    committed = (ROOT / "figures" / "study-tables.md").read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8") == committed


def _selection_runs(
    records: list[dict],
) -> dict[tuple[str, str], list[tuple[float, str, dict]]]:
    """The committed study's selection redone here from the raw JSONL, independently of the study code: per
    (dataset, method) the seed-0 runs as (score, point name, point), the score being the balanced validation
    error (minus the validation mAP)."""
    import statistics

    runs: dict[tuple[str, str], list[tuple[float, str, dict]]] = {}
    for r in records:
        if r["seed"] == 0:
            v = r["val"]
            score = -v["map"] if r["multi_label"] else -statistics.fmean(v["per_class_acc"])
            name = ",".join(f"{k}={r['point'][k]}" for k in sorted(r["point"]))
            runs.setdefault((r["dataset"], r["method"]), []).append((score, name, r["point"]))
    return runs


def _best_point(runs: list[tuple[float, str, dict]]) -> dict:
    """The point of the lowest score among :func:`_selection_runs`' runs, the first name on a tie."""
    return min(runs, key=lambda t: (t[0], t[1]))[2]


def _independent_summary() -> dict[tuple[str, str], tuple[float, float]]:
    """Mean ± std of the test score per (dataset, method) at its :func:`_best_point`, over every seed
    trained there."""
    import statistics

    records = [json.loads(x) for x in RECORDS.read_text(encoding="utf-8").splitlines()]
    out = {}
    for k, runs in _selection_runs(records).items():
        point = _best_point(runs)
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
    recomputed here from lpl_train/configs/study/fmnist-runs.jsonl (selection on validation only)."""
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


# ------------------------------------------------------------------- selection: more of its rules
def test_selection_ranks_an_undefined_score_last_whatever_the_order():
    """A point whose validation score is NaN (no class defined) or that diverged is never preferred to
    one with a score, even when it was recorded first."""
    nan = _rec("d", "m", {"eps": 1}, 0, 0, 0)
    nan["val"] = {"per_class_acc": [None] * 10}
    assert math.isnan(S.validation_score(nan))
    worse = _rec("d", "m", {"eps": 2}, 0, val_acc=5, test_acc=0)
    assert S.select_best([nan, worse]) == {("d", "m"): {"eps": 2}}
    assert S.select_best([worse, nan]) == {("d", "m"): {"eps": 2}}
    div = dict(_rec("d", "m", {"eps": 0}, 0, val_acc=99, test_acc=99), diverged="non-finite loss")
    assert S.validation_score(div) == math.inf
    assert S.select_best([div, worse]) == {("d", "m"): {"eps": 2}}
    # a tie on the score goes to the first slug, in any order (eps=10 sorts before eps=2 as text)
    a, b = _rec("d", "m", {"eps": 10}, 0, 70, 0), _rec("d", "m", {"eps": 2}, 0, 70, 0)
    assert S.select_best([b, a]) == S.select_best([a, b]) == {("d", "m"): {"eps": 10}}


def test_a_multi_label_run_without_a_validation_map_ranks_last():
    rec = _rec("v", "m", {"x": 1}, 0, None, None, ml=True)
    rec["val"] = {"map": None}
    assert S.validation_score(rec) == math.inf
    ok = {**rec, "point": {"x": 2}, "val": {"map": 40.0}}
    assert S.select_best([rec, ok])[("v", "m")] == {"x": 2}


def test_selection_uses_the_select_seed_runs_only():
    """With select_seed = 1 the grid is read on seed 1; a better validation score of another seed at
    another point does not move the choice, and the summary pools the seeds at the chosen point."""
    study = _study()
    study["seeds"], study["select_seed"] = [0, 1], 1
    recs = [
        _rec("lt", "ce", {"eps": 1}, 1, val_acc=60, test_acc=70),
        _rec("lt", "ce", {"eps": 2}, 1, val_acc=50, test_acc=90),
        _rec("lt", "ce", {"eps": 2}, 0, val_acc=99, test_acc=90),  # other seed, other point
        _rec("lt", "ce", {"eps": 1}, 0, val_acc=10, test_acc=80),
    ]
    assert S.chosen_points(recs, study) == {("lt", "ce"): {"eps": 1}}
    s = S.summarize(recs, study)[("lt", "ce")]
    assert s["point"] == {"eps": 1} and s["seeds"] == [0, 1]
    assert s["overall"] == pytest.approx((25.0, math.sqrt(50.0)))  # errors 30 and 20, sample std
    # a seed recorded twice: an identical copy counts once; a copy with other results is refused (the
    # selection took the better copy and the summary the first)
    s = S.summarize([*recs, dict(recs[3])], study)[("lt", "ce")]
    assert s["n"] == 2 and s["overall"] == pytest.approx((25.0, math.sqrt(50.0)))
    again = _rec("lt", "ce", {"eps": 1}, 0, val_acc=10, test_acc=40)
    for joined in ([*recs, again], [again, *recs]):
        with pytest.raises(
            ValueError, match=r"1 run\(s\) recorded twice with different results .*seed0"
        ):
            S.summarize(joined, study)
    better = _rec("lt", "ce", {"eps": 2}, 1, val_acc=70, test_acc=90)  # would move the selection
    with pytest.raises(ValueError, match="recorded twice with different results"):
        S.write_tables([*recs, better], study, Path("/nonexistent-never-written"), "t")


def test_final_runs_cover_only_the_chosen_methods_and_planned_puts_costly_regimes_first(tmp_path):
    study = _tiny_study(tmp_path)
    study["seeds"] = [0, 1, 2]
    finals = S.final_runs(study, {("g", "lpl_varied"): {"delta_epsilon": 1.0}})
    assert [(r["method"], r["seed"], r["point"]) for r in finals] == [
        ("lpl_varied", 1, {"delta_epsilon": 1.0}),
        ("lpl_varied", 2, {"delta_epsilon": 1.0}),
    ]
    assert finals[0]["params"]["delta_epsilon"] == 1.0 and finals[0]["params"]["split"] == "index"
    assert finals[0]["key"] == "g/lpl_varied/delta_epsilon=1.0/seed1"
    study["datasets"]["b"] = {"name": "gaussian", "regime": "balanced"}
    specs = [{"dataset": d, "key": d, "seed": 0, "point": {}} for d in ("g", "b", "g")]
    assert [p.key for p in S.planned(study, specs, tmp_path)] == ["b", "g", "g"]
    assert S.planned(study, specs, tmp_path)[0].out == tmp_path / "runs" / "b"


def test_a_method_may_have_more_seeds_than_the_study(tmp_path):
    """A method's own ``seeds`` (more seeds for the comparisons that need them): its final runs cover them,
    seed by seed after the study's; the summary pools exactly them; the other methods keep the study's."""
    study = _tiny_study(tmp_path)
    study["methods"][0]["seeds"] = [0, 1, 5, 3]  # CE: two more seeds than the study's [0, 1]
    assert S.method_seeds(study, "ce") == [0, 1, 5, 3]
    assert S.method_seeds(study, study["methods"][1]) == [0, 1]
    assert S.all_seeds(study) == [0, 1, 5, 3]
    finals = S.final_runs(study, {("g", "ce"): {}, ("g", "lpl_varied"): {"delta_epsilon": 1.0}})
    assert [(r["method"], r["seed"]) for r in finals] == [
        ("ce", 1), ("lpl_varied", 1), ("ce", 5), ("ce", 3)
    ]  # fmt: skip
    recs = [_rec("g", m, p, seed, 50, 100 - err) for m, p in (("ce", {}), ("lpl_varied", {"delta_epsilon": 1.0}))
            for seed, err in ((0, 10.0), (1, 20.0), (3, 30.0), (5, 40.0))]  # fmt: skip
    summ = S.summarize(recs, study)
    assert summ[("g", "ce")]["seeds"] == [0, 1, 3, 5] and summ[("g", "ce")]["n"] == 4
    assert summ[("g", "ce")]["overall"][0] == pytest.approx(25.0)
    assert summ[("g", "lpl_varied")]["seeds"] == [0, 1]
    assert summ[("g", "lpl_varied")]["overall"][0] == pytest.approx(15.0)


def test_select_seed_plan_and_point_params_override_the_fixed_ones(tmp_path):
    study = _tiny_study(tmp_path)
    study["seeds"], study["select_seed"] = [3, 5], 5
    study["methods"][1]["params"]["delta_epsilon"] = 9.0  # the grid value wins over a fixed one
    runs = S.plan_runs(study)
    assert {r["seed"] for r in runs} == {5}
    assert [r["params"]["delta_epsilon"] for r in runs if r["method"] == "lpl_varied"] == [0.5, 1.0]
    assert [r["seed"] for r in S.final_runs(study, {("g", "ce"): {}})] == [3]
    with pytest.raises(ValueError, match="phase"):
        S.plan_runs(study, "final")


# --------------------------------------------------------------------------------- definition checks
def test_study_definition_checks_every_key(tmp_path):
    base = _tiny_study(tmp_path)  # writes tiny.toml
    p = tmp_path / "tiny.toml"
    text = p.read_text()
    G = "grid = {delta_epsilon = [0.5, 1.0]}\n"  # the last line
    cases = [
        ("seeds = [0, 1]", "seeds = [0, -1]", "seeds must be a non-empty list"),
        ("seeds = [0, 1]", "seeds = [0, true]", "seeds must be a non-empty list"),
        ("seeds = [0, 1]", "seeds = []", "seeds must be a non-empty list"),
        ("seeds = [0, 1]", "seeds = [0, 0]", "seeds must be distinct"),
        ("val_fraction = 0.25", "val_fraction = 1.0", "val_fraction"),
        ("val_fraction = 0.25", "val_fraction = 1", "val_fraction"),
        ("epochs = 2", "epochs = 0", "epochs must be an int >= 1"),
        ('regime = "longtail"', 'regime = "imbalanced"', "datasets.g.regime"),
        ('id = "lpl_varied"', 'id = "ce"', "method ids must be unique"),
        (
            'id = "lpl_varied"\nregime = "single"',
            'id = "lpl_varied"\nregime = "multi"',
            "regime must be",
        ),
        ('loss = "lpl"', "", "lacks 'loss'"),
        ('name = "tiny"', 'name = "tiny"\nrecord_delta_norm = 1', "record_delta_norm"),
        ('name = "tiny"', 'name = "tiny"\nquick = 3', r"\[quick\] must be a table"),
        (G, G + "[quick]\nscale = 1.5", "quick.scale"),
        (G, G + "[quick]\nscale = 0.0", "quick.scale"),
        (G, G + '[quick]\ngrid = "none"', "quick.grid"),
        ("epochs = 2", "epochs = [", "not valid TOML"),
        ("epochs = 2\n", "", "lacks the required key 'epochs'"),
        (G, G + "seeds = [1, 2]\n", "method 'lpl_varied': select_seed 0 must be one of the seeds"),
        (G, G + "seeds = [0, 0]\n", "method 'lpl_varied': seeds must be distinct"),
        (G, G + "seeds = 3\n", "method 'lpl_varied': seeds must be a non-empty list"),
        (G, G + "grid_floor = 0.0\n", "grid_floor must be a table"),
        (G, G + "grid_floor = {alpha = 0.0}\n", "grid_floor names 'alpha', not a grid key"),
        (
            G,
            G + 'grid_floor = {delta_epsilon = "0"}\n',
            "grid_floor.delta_epsilon must be a number",
        ),
        (
            G,
            G + "grid_floor = {delta_epsilon = true}\n",
            "grid_floor.delta_epsilon must be a number",
        ),
        (G, G + "grid_floor = {delta_epsilon = 0.75}\n", "values below its grid_floor 0.75"),
        # a key no table knows: refused, named with its table and the closest allowed key (a misspelt
        # grid would otherwise train the method without one: no perturbation at all)
        (G, G.replace("grid =", "grids ="),
         r"unknown key 'methods\[1\].grids' \(did you mean 'grid'\?\); allowed there: id, regime"),
        ('name = "tiny"', 'name = "tiny"\nbogus_key = 1', r"unknown key 'bogus_key'; allowed there: name"),
        ('name = "tiny"', 'name = "tiny"\nscale = 0.5', r"unknown key 'scale'"),  # a [quick] key
        ('label = "Gaussian"', 'label = "Gaussian"\nregim = "x"',
         r"unknown key 'datasets.g.regim' \(did you mean 'regime'\?\)"),
        (G, G + "balanced = {grid = {}, param = {}}\n",
         r"unknown key 'methods\[1\].balanced.param' \(did you mean 'params'\?\)"),
        (G, G + "balanced = 3\n", r"methods\[1\].balanced must be a table, got 3"),
        (G, G + "[quick]\nepoch = 1", r"unknown key 'quick.epoch' \(did you mean 'epochs'\?\)"),
        (G, G + '[[claims]]\nregime = "longtail"\nlower = true',
         r"unknown key 'claims\[0\].lower' \(did you mean 'lower_better'\?\)"),
        (G, G + "grid_flor = {delta_epsilon = 0.5}\n",
         r"unknown key 'methods\[1\].grid_flor' \(did you mean 'grid_floor'\?\)"),
        ('name = "tiny"', 'name = "tiny"\ngroups_fractions = [0.3, 0.3]',
         r"unknown key 'groups_fractions' \(did you mean 'group_fractions'\?\)"),
        ("params = {in_features = 2}", "parms = {in_features = 2}",
         r"unknown key 'model.parms' \(did you mean 'params'\?\); allowed there: name, params"),
        # what goes whole into every run's config is validated with it when the file is read
        ("lr = 0.1", "lrr = 0.1", r"run g/ce/default/seed0: unknown config key 'optim.lrr'"),
        ('kind = "constant"', 'kind = "poly"', r"config key 'schedule.kind' has value 'poly'"),
        ("momentum = 0.9", "momentum = -1.0", r"config key 'optim.momentum' has value -1.0"),
        ("batch_size = 64", "batch_size = 0", r"config key 'data.batch_size' has value 0"),
        ('[model]\nname = "linear"', "[model]", r"\[model\] needs a name"),
        ('[model]\nname = "linear"\nparams = {in_features = 2}\n', "",
         "lacks the required key 'model'"),
    ]  # fmt: skip
    for old, new, msg in cases:
        assert old in text
        p.write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=msg):
            S.load_study(p, quick=True)
    p.write_text(
        text + "grid_floor = {delta_epsilon = 0.5}\n"
    )  # at the grid's lowest value: allowed
    assert S.load_study(p)["methods"][1]["grid_floor"] == {"delta_epsilon": 0.5}
    p.write_text(text)
    with pytest.raises(TypeError, match="quick must be a bool"):
        S.load_study(p, quick=1)
    assert S.load_study(p) == base


_G = "grid = {delta_epsilon = [0.5, 1.0]}\n"  # the last line of the tiny study
STUDY_TABLES = [
    ("", "zzz = 1\n", {"name", "description", "seeds", "select_seed", "val_fraction", "epochs",
                       "datasets", "methods", "model", "optim", "schedule", "batch_size", "data_seed",
                       "drw_fraction", "quick", "train", "groups", "group_fractions",
                       "record_delta_norm", "claims"}),
    ("[datasets.g]\n", "[datasets.g]\nzzz = 1\n", {"name", "regime", "params", "n_max", "label"}),
    (_G, _G + "zzz = 1\n", {"id", "regime", "loss", "params", "grid", "balanced", "model_params",
                            "label", "grid_floor", "seeds"}),
    (_G, _G + "balanced = {zzz = 1}\n", {"params", "grid"}),
    (_G, _G + "[quick]\nzzz = 1\n", {"seeds", "epochs", "scale", "grid"}),
    ("params = {in_features = 2}\n", "params = {in_features = 2}\nzzz = 1\n", {"name", "params"}),
    (_G, _G + "[[claims]]\nzzz = 1\n", {"regime", "a", "b", "column", "lower_better", "text"}),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "allowed"), STUDY_TABLES)
def test_each_study_table_allows_exactly_its_documented_keys(tmp_path, old, new, allowed):
    """The keys of each table as the module docstring lists them, no more: a key added to a list by
    mistake would let a stray key pass silently again."""
    _tiny_study(tmp_path)
    p = tmp_path / "tiny.toml"
    text = p.read_text()
    if old == "":
        p.write_text(new + text)
    else:
        assert text.count(old) == 1
        p.write_text(text.replace(old, new))
    with pytest.raises(ValueError, match="unknown key .*zzz'") as info:
        S.load_study(p)
    assert set(str(info.value).split("allowed there: ")[1].split(", ")) == allowed


def test_quick_table_sets_seeds_epochs_scale_and_grid(tmp_path):
    _tiny_study(tmp_path)
    p = tmp_path / "tiny.toml"
    p.write_text(p.read_text() + '[quick]\nseeds = [0]\nepochs = 1\nscale = 0.5\ngrid = "first"\n')
    full, quick = S.load_study(p), S.load_study(p, quick=True)
    assert (full["seeds"], full["epochs"], full["scale"], full["grid_mode"]) == (
        [0, 1],
        2,
        1.0,
        "all",
    )
    assert (quick["seeds"], quick["epochs"], quick["scale"], quick["grid_mode"]) == (
        [0],
        1,
        0.5,
        "first",
    )
    assert full["quick"] is False and quick["quick"] is True
    assert len(S.plan_runs(quick)) == 2 and len(S.plan_runs(full)) == 3


def test_find_study_by_path_or_shipped_name(tmp_path):
    assert S.find_study(None) == S.DEFAULT_STUDY
    assert S.find_study("ablation") == S.STUDY_DIR / "ablation.toml"
    own = tmp_path / "fmnist"  # a file named like a shipped study is taken as given
    own.write_text("x")
    assert S.find_study(own) == own
    with pytest.raises(FileNotFoundError, match="shipped studies: .*fmnist"):
        S.find_study("ablation.toml")
    assert S.shipped_records({"path": str(tmp_path / "x.toml")}) == tmp_path / "x-runs.jsonl"


def test_records_file_is_sorted_by_key_and_read_back_without_blank_lines(tmp_path):
    ids = {"dataset": "d", "method": "m", "seed": 0, "point": {}}
    recs = [{**ids, "key": "b", "z": 1, "a": 2}, {**ids, "key": "a", "y": 0}]
    path = S.write_records(recs, tmp_path / "sub" / "r.jsonl")
    assert path.read_text().splitlines() == [json.dumps(recs[1], sort_keys=True),
                                             json.dumps(recs[0], sort_keys=True)]  # fmt: skip
    path.write_text(path.read_text() + "\n  \n")
    assert S.read_records(path) == [recs[1], recs[0]]
    with pytest.raises(FileNotFoundError, match="run the study"):
        S.read_records(tmp_path / "none.jsonl")


def test_run_study_refuses_a_bad_jobs_count(tmp_path):
    study = _tiny_study(tmp_path)
    for jobs in (0, True, 1.0):
        with pytest.raises(ValueError, match="jobs"):
            S.run_study(study, tmp_path / "o", jobs=jobs, log=lambda s: None)


# ----------------------------------------------------------------------------------- study runs
def test_study_data_subsamples_the_largest_class_to_n_max_and_carves_a_stratified_validation_split(
    tmp_path,
):
    """n_max × scale images in the largest class (Python rounding), the others in proportion but at least
    two, then val_fraction of each class held out; class_counts are those of the training split."""
    import numpy as np
    import torch

    from lpl_train.ablation import read_records as read_ablation_records
    from lpl_train.data import build_datasets
    from lpl_train.study_runs import _context, study_data

    full = np.bincount(build_datasets("gaussian", seed=0, gamma=4.0, num_train=400, num_test=400)
                       .train.targets.numpy())  # fmt: skip
    assert full.tolist() == [320, 80]
    study = _tiny_study(tmp_path)
    for name, n_max, scale, kept in (
        ("nmax_a", 99, 0.5, [50, 12]),  # 49.5 rounds to 50; 80·50/320 = 12.5 rounds to 12
        ("nmax_b", 6, 1.0, [6, 2]),  # 80·6/320 = 1.5 rounds to 2
        ("nmax_c", 3, 1.0, [3, 2]),  # 0.75 rounds to 1, but a class keeps two images
    ):
        st = dict(study, name=name, scale=scale)
        st["datasets"] = {"g": dict(study["datasets"]["g"], n_max=n_max)}
        d = study_data(st, "g")
        tr, va = d["train"].targets.numpy(), d["val"].targets.numpy()
        assert (np.bincount(tr, minlength=2) + np.bincount(va, minlength=2)).tolist() == kept, name
        assert d["class_counts"] == np.bincount(tr, minlength=2).tolist()
        assert _context(st, d)["num_train"] == len(tr)
        # the kept rows stay in the training set's order (the committed records' batches depend on it)
        full_x = build_datasets(
            "gaussian", seed=0, gamma=4.0, num_train=400, num_test=400
        ).train.images
        where = [int(torch.nonzero((full_x == row).all(1))[0, 0]) for row in d["train"].images]
        assert where == sorted(where) and len(set(where)) == len(where), name
    # the cache tells scales apart: the same study at full scale keeps 99 and round(24.75) = 25
    st = dict(study, name="nmax_a", scale=1.0)
    st["datasets"] = {"g": dict(study["datasets"]["g"], n_max=99)}
    d = study_data(st, "g")
    assert len(d["train"].targets) + len(d["val"].targets) == 124
    # without n_max the whole training set, drawn and split with data_seed
    from lpl_train.data.common import split_validation

    d = study_data(dict(study, name="nmax_e", data_seed=3), "g")
    ref = build_datasets("gaussian", seed=3, gamma=4.0, num_train=400, num_test=400).train
    ref_train, ref_val = split_validation(ref, 0.25, 3)
    assert torch.equal(d["val"].images, ref_val.images) and torch.equal(
        d["train"].images, ref_train.images
    )
    d = study_data(dict(study, name="nmax_d"), "g")  # no n_max: the whole training set
    assert len(d["train"].targets) == 300 and len(d["val"].targets) == 100
    assert d["class_counts"] == [240, 60] and len(d["test"].targets) == 400
    # DRW starts after drw_fraction of the epochs (0.7 by default): epoch 8 of 12, as the docs state
    assert _context({"epochs": 12}, d)["drw_epoch"] == 8
    assert _context({"epochs": 60, "drw_fraction": 0.8}, d)["drw_epoch"] == 48
    # floor(0.7 · 48) = floor(33.6) = 33 (fmnist.toml's rule), as in the committed 48-epoch ablation records
    assert _context({"epochs": 48}, d)["drw_epoch"] == 33
    e48 = [
        r
        for r in read_ablation_records(ROOT / "figures" / "ablation-runs.jsonl.gz")
        if r["study"] == "lpl_ablation_e48"
    ]
    assert {r["params"]["drw_epoch"] for r in e48 if "drw_epoch" in r["params"]} == {33}


def test_engine_config_of_a_study_run(tmp_path):
    from lpl_train.study_runs import engine_config

    study = _tiny_study(tmp_path)
    study["batch_size"] = 32
    study["model"]["params"] = {"in_features": 2, "width": 8}
    spec = S.final_runs(study, {("g", "lpl_varied"): {"delta_epsilon": 1.0}})[0]
    spec["model_params"] = {"width": 4}
    cfg = engine_config(study, spec, {"a": 1})
    assert cfg["name"] == "g__lpl_varied__delta_epsilon-1.0"  # no seed: the report pools the seeds
    assert cfg["data"] == {"name": "gaussian", "batch_size": 32}
    assert cfg["model"]["params"] == {"in_features": 2, "width": 4}  # the method's model params win
    assert cfg["loss"] == {"name": "lpl", "params": {"a": 1}}
    assert (
        cfg["train"]["eval_every"] == 2
        and cfg["train"]["seed"] == 1
        and cfg["train"]["device"] == "cpu"
    )
    assert cfg["schedule"] == {"epochs": 2, "kind": "constant"}


def test_record_parts_keep_only_the_slim_fields():
    from lpl_train.study_runs import _slim, _strip

    assert _slim(None) is None
    lv = {"relative_variation": [0.1], "count": [3], "loss": [1.0], "perturbed_loss": [1.1]}
    assert _slim(lv) == {"relative_variation": [0.1], "count": [3]}
    assert _slim({"pos": lv, "neg": {"relative_variation": [0.2]}}) == {
        "pos": {"relative_variation": [0.1], "count": [3]},
        "neg": {"relative_variation": [0.2]},
    }
    m = {
        "loss": 1.0,
        "top1_error": 2.0,
        "per_class_acc": [1],
        "map": 3.0,
        "ap_per_class": [4],
        "x": 5,
    }
    assert _strip(m) == {k: v for k, v in m.items() if k != "x"}


def test_isolated_variation_of_ldam_is_the_margin_against_the_scaled_logits():
    """CE of s(u − m_y e_y) against CE of s·u per class, (Σl′ − Σl)/Σl; the model's mode is kept."""
    import torch
    import torch.nn.functional as F

    from lpl_train.data import build_datasets
    from lpl_train.losses import build_loss
    from lpl_train.study_runs import isolated_variation

    b = build_datasets("gaussian", seed=0, gamma=4.0, num_train=200, num_test=10)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    loss = build_loss("ldam", class_counts=[160, 40], max_m=0.5, s=30.0)
    data = {"train": b.train, "num_classes": 2, "multi_label": False}
    out = isolated_variation(model, loss, data)
    assert model.training
    with torch.no_grad():
        x, y = b.train.images.float(), b.train.targets.long()
        u = model(x)
        l0 = F.cross_entropy(30.0 * u, y, reduction="none").double()
        l1 = F.cross_entropy(loss.margin_logits(u, y), y, reduction="none").double()
    expected = [float((l1[y == c].sum() - l0[y == c].sum()) / l0[y == c].sum()) for c in (0, 1)]
    assert out["relative_variation"] == pytest.approx(expected, rel=1e-5)
    assert out["count"] == [int((y == 0).sum()), int((y == 1).sum())]
    assert isolated_variation(model, build_loss("ce"), data) is None


def test_isolated_variation_of_ntr_drops_the_weights_and_the_focal_factor():
    """NTR alone: R-BCE with the re-balanced weights and the focal factor switched off, against BCE of u,
    for the positive and the negative terms; the trained loss itself is left unchanged."""
    import torch

    from lpl_train.data.common import TensorData
    from lpl_train.loss_variation import LossVariation
    from lpl_train.losses.multi_label import DBLoss, RebalancedBCELoss
    from lpl_train.study_runs import isolated_variation

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g)
    y = (torch.rand(60, 3, generator=g) < torch.tensor([0.6, 0.3, 0.1])).float()
    y[0] = 1.0  # every class has a positive
    counts = y.sum(0).tolist()
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 3)
    loss = DBLoss(class_counts=counts, num_samples=60, neg_scale=5.0, init_bias=0.05)
    data = {"train": TensorData(x, y), "num_classes": 3, "multi_label": True}
    out = isolated_variation(model, loss, data)
    assert loss.reweight and loss.focal_gamma == 2.0 and loss.reduction == "mean"
    ntr = RebalancedBCELoss(class_counts=counts, neg_scale=5.0, init_bias=0.05, num_samples=60,
                            focal_gamma=None, reweight=False, reduction="none")  # fmt: skip
    lv = LossVariation(3, multi_label=True)
    with torch.no_grad():
        u = model(x)
        lv.update(u, y, perturbed_loss=ntr(u, y))
    ref = lv.compute()
    for part in ("pos", "neg"):
        assert out[part]["relative_variation"] == pytest.approx(
            ref[part]["relative_variation"], rel=1e-5
        )


def test_tables_do_not_depend_on_the_order_of_the_records(tmp_path):
    study, recs = _study(), _hand_records()
    a = S.write_tables(recs, study, tmp_path / "a", "t").read_text()
    b = S.write_tables(recs[::-1], study, tmp_path / "b", "t").read_text()
    assert a == b and "| CE | 32.00 ± 2.83" in a


def test_a_study_run_scores_the_validation_split_as_val_and_the_test_set_as_test(
    tmp_path, monkeypatch
):
    """The record's ``val`` (what the selection reads) comes from the validation split and ``test`` from
    the test set: here the validation split holds only class 0 and the test set only class 1, so each
    has exactly one defined per-class accuracy. The record carries the run's identity, and a run stopped
    at its last epoch is finished (recorded, checkpoints removed)."""
    from lpl_train import study_runs as SR

    study = _tiny_study(tmp_path)
    study["name"] = "tiny_val_test"
    real = SR.study_data(study, "g")
    val_idx = (real["val"].targets == 0).nonzero().squeeze(1).numpy()
    test_idx = (real["test"].targets == 1).nonzero().squeeze(1).numpy()
    data = dict(real, val=real["val"].subset(val_idx), test=real["test"].subset(test_idx))
    monkeypatch.setattr(SR, "study_data", lambda st, d: data)
    spec = S.plan_runs(study)[1]  # lpl_varied, delta_epsilon=0.5
    rec = SR.train_run(
        study, spec, tmp_path / "run", resume=False, stop_after_epoch=study["epochs"]
    )
    assert rec["val"]["per_class_acc"][1] is None and rec["val"]["per_class_acc"][0] is not None
    assert rec["test"]["per_class_acc"][0] is None and rec["test"]["per_class_acc"][1] is not None
    assert rec["test"]["top1_error"] == pytest.approx(100.0 - rec["test"]["per_class_acc"][1])
    assert (rec["study"], rec["key"], rec["method"], rec["seed"], rec["epochs"]) == (
        "tiny_val_test",
        spec["key"],
        "lpl_varied",
        0,
        2,
    )
    assert rec["point"] == {"delta_epsilon": 0.5} and rec["params"]["delta_epsilon"] == 0.5
    assert rec["num_val"] == len(val_idx) and rec["num_train"] == 300 and "delta_norm" not in rec
    assert (tmp_path / "run" / "result.json").is_file()
    assert not list((tmp_path / "run").glob("checkpoint*"))


def test_run_components_take_the_run_seed_and_the_delta_recorder_only_when_asked(tmp_path):
    import torch

    from lpl_train.data import make_loader
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model
    from lpl_train.study_runs import _components, _delta_recorder, engine_config, study_data

    study = _tiny_study(tmp_path)
    data = study_data(study, "g")
    spec = dict(S.final_runs(study, {("g", "ce"): {}})[0])
    assert spec["seed"] == 1
    comps = _components(study, spec, engine_config(study, spec, {}), data)
    torch.manual_seed(1)
    ref = build_model("linear", num_classes=2, in_features=2)
    for a, b in zip(comps.model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ref_loader = make_loader(data["train"], batch_size=64, train=True, augment=data["augment"],
                             device=torch.device("cpu"), seed=1)  # fmt: skip
    assert torch.equal(next(iter(comps.train_loader))[1], next(iter(ref_loader))[1])
    loss = build_loss("lpl", num_classes=2, class_counts=[240, 60], split="index", tau=1)
    assert _delta_recorder(study, loss, comps.train_loader, tmp_path) is None
    rec = _delta_recorder(dict(study, record_delta_norm=True), loss, comps.train_loader, tmp_path)
    assert rec is not None and rec.path == tmp_path / "delta_norm.json"
    rec.close()


def test_study_data_scales_the_multi_label_training_size_with_a_floor_of_50(tmp_path, monkeypatch):
    import lpl_train.data as D
    from lpl_train.study_runs import study_data

    real, asked = D.build_datasets, []

    def fake(name, seed=0, **params):
        asked.append(params["num_train"])
        return real("gaussian", seed=seed, gamma=4.0, num_train=400, num_test=40)

    monkeypatch.setattr(D, "build_datasets", fake)
    study = _tiny_study(tmp_path)
    for scale, want in ((0.25, 250), (0.04, 40), (1.0, 1000)):
        st = dict(study, name="ml_scale", scale=scale)
        st["datasets"] = {
            "ml": {"name": "x", "regime": "multilabel", "params": {"num_train": 1000}}
        }
        study_data(st, "ml")
        assert asked[-1] == max(50, want)


def test_a_run_locked_by_another_process_stops_the_study_before_selecting(tmp_path, monkeypatch):
    """A selection run that another process is training (its folder locked): this pass trains the others
    and selects nothing (a choice among the finished points could differ from the study's), the command
    exits 3; run_one says the folder is in use."""
    import torch

    from lpl_train import study_runs as SR
    from lpl_train.engine import RunLocked

    torch.set_num_threads(1)
    real = SR.train_run

    def train_run(study, spec, run_dir, resume, stop_after_epoch=None):
        if spec["point"] == {"delta_epsilon": 0.5}:
            raise RunLocked(f"{run_dir} is locked")
        return real(study, spec, run_dir, resume, stop_after_epoch)

    monkeypatch.setattr(SR, "train_run", train_run)
    study = _tiny_study(tmp_path)
    logs: list[str] = []
    with pytest.raises(S.SelectionIncomplete, match=r"1 selection run\(s\) are being trained by "
                       r"another process \(g/lpl_varied/delta_epsilon=0.5/seed0\)"):  # fmt: skip
        S.run_study(study, tmp_path / "out", jobs=1, log=logs.append)
    assert not any(s.startswith("selected on validation") for s in logs)
    done = sorted(p.parent.name for p in (tmp_path / "out").rglob("result.json"))
    assert done == ["seed0", "seed0"]  # the other two selection runs, no final seed
    assert S.main(["--study", str(study["path"]), "--out", str(tmp_path / "out")]) == 3
    (locked,) = [s for s in S.plan_runs(study) if s["point"] == {"delta_epsilon": 0.5}]
    with pytest.raises(FileExistsError, match="locked by another process"):
        S.run_one(study, locked, tmp_path / "out")


def test_a_diverged_final_run_is_left_out_of_the_summary():
    # seed 1 diverged at the chosen point (no test metrics): the row is seed 0 alone, not a crash
    study = _study()
    recs = [_rec("lt", "ce", {}, 0, 50, 70)]
    bad = _rec("lt", "ce", {}, 1, 50, 0)
    bad.update({"diverged": "non-finite loss at epoch 1", "test": None})
    summ = S.summarize([*recs, bad], study)
    ce = summ[("lt", "ce")]
    assert ce["n"] == 1 and ce["seeds"] == [0] and ce["overall"] == (30.0, None)


def test_study_command_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert S.main(["--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == "python -m lpl_train.study: error: --jobs must be >= 1, got 0\n"
    assert not (tmp_path / "o").exists()
    assert S.main(["--study", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m lpl_train.study: error: ") and err.count("\n") == 1
    assert "none.toml" in err


def test_a_resumed_study_run_records_the_training_time_of_every_process(tmp_path, monkeypatch):
    """A study run's ``wall_s`` counts the training of the processes before a resume (the engine carries
    it in the checkpoint), not only the last process's: the first process's clock here gains an hour
    at every reading, so its share alone is an hour or more."""
    import itertools
    import time

    from lpl_train import study_runs as SR

    study = _tiny_study(tmp_path)
    spec = S.plan_runs(study)[0]
    hour, real, calls = 3600.0, time.perf_counter, itertools.count()
    with monkeypatch.context() as m:
        m.setattr(time, "perf_counter", lambda: real() + hour * next(calls))
        SR.train_run(study, spec, tmp_path / "run", resume=False, stop_after_epoch=1)
    rec = SR.train_run(study, spec, tmp_path / "run", resume=True)
    assert hour <= rec["wall_s"] < hour * 1000


def test_the_count_rule_in_a_study_table_puts_a_class_of_exactly_100_by_its_kind():
    """groups = "counts": a multi-label class with exactly 100 training positives is head (at least 100),
    a single-label class with exactly 100 samples is not many (more than 100)."""
    # class 0 has 100 training samples (positives), the others fewer
    study, recs = {**_study(), "groups": "counts"}, _hand_records()
    summ = S.summarize(recs, study)
    ml, ce = summ[("ml", "bce")], summ[("lt", "ce")]
    assert ml["head"][0] == pytest.approx((60.0 + 62.0) / 2)  # class 0 alone
    assert math.isnan(ce["many"][0])  # no class has more than 100
    # medium: 20 to 100 samples, classes 0-5 (errors 10, 10, 10, 20, 20, 20 and 6, 6, 6, 30, 30, 30)
    assert ce["medium"][0] == pytest.approx((15.0 + 18.0) / 2)


def test_a_record_is_tied_to_the_data_seed_but_not_to_the_dataset_s_display_label(tmp_path):
    from lpl_train.study_runs import check_definition, run_definition

    study = _tiny_study(tmp_path)
    spec = S.plan_runs(study)[0]
    rec = {"definition": run_definition(study, spec)}
    relabelled = dict(study, datasets={"g": dict(study["datasets"]["g"], label="Two Gaussians")})
    check_definition(rec, relabelled, spec, tmp_path / "result.json")  # the same runs: read back
    other_data = dict(study, data_seed=int(study.get("data_seed", 0)) + 1)
    with pytest.raises(ValueError, match=r"it differs in data_seed\)"):
        check_definition(rec, other_data, spec, tmp_path / "result.json")


def test_study_data_tells_validation_fractions_apart(tmp_path):
    """Two validation fractions of one dataset are two splits, also within one process (the cache)."""
    from lpl_train.study_runs import study_data

    study = _tiny_study(tmp_path)  # gaussian: 320 + 80 training images, no n_max
    sizes = [len(study_data(dict(study, val_fraction=f), "g")["val"].targets) for f in (0.25, 0.5)]
    assert sizes == [80 + 20, 160 + 40]


def test_a_record_written_by_another_study_meanwhile_is_read_back_not_overwritten(
    tmp_path, monkeypatch
):
    """Two studies sharing an --out: the one that finds the record written once it holds the folder's
    lock (after fit) reads it back instead of evaluating and writing over it."""
    import torch

    from lpl_train import engine
    from lpl_train.study_runs import run_definition

    torch.set_num_threads(1)
    study = _tiny_study(tmp_path)
    spec = S.plan_runs(study)[0]
    theirs = {
        "key": spec["key"],
        "test": {"top1_error": 12.5},
        "definition": run_definition(study, spec),
    }
    real_fit = engine.fit

    def fit_then_the_other_study_records(cfg, run_dir, **kw):
        out = real_fit(cfg, run_dir, **kw)
        (Path(run_dir) / "result.json").write_text(json.dumps(theirs))
        return out

    monkeypatch.setattr(engine, "fit", fit_then_the_other_study_records)
    assert S.run_one(study, spec, tmp_path / "out") == theirs
    path = tmp_path / "out" / "runs" / spec["key"] / "result.json"
    assert json.loads(path.read_text()) == theirs


def test_records_files_are_replaced_whole_never_written_in_place(tmp_path, monkeypatch):
    """The study's and the ablation's records files (committed results) are written to a temporary file
    and renamed over the old one: a write that fails (a full disk, a kill) leaves the old records whole and
    no temporary file behind. A rename gives the file a new inode; a write in place keeps its inode."""
    import errno

    import lpl_train._files as F
    from lpl_train.ablation_records import write_records as write_ablation

    recs = [{"key": "b", "x": 1}, {"key": "a", "x": 2}]
    for write, name in ((S.write_records, "runs.jsonl"), (write_ablation, "runs.jsonl.gz")):
        path = tmp_path / name
        path.write_bytes(b"old records\n")
        inode = path.stat().st_ino
        write(recs, path)
        assert path.stat().st_ino != inode  # replaced by a rename, not truncated and rewritten
        before = path.read_bytes()

        def full_disk(*_):
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(F.os, "fsync", full_disk)
            with pytest.raises(OSError, match="No space left"):
                write([*recs, {"key": "c", "x": 3}], path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_multi_label_validation_split_shares_no_source_image_with_training(
    tmp_path, monkeypatch
):
    """Mosaics: the study's validation mosaics are tiled from held-out Fashion-MNIST images (the dataset's
    own ``val_fraction``), not split off the built training mosaics, which would show some source images in
    both; and such a run's definition says so, so that a record of the former split is not read back."""
    import torch

    from lpl_train.study_runs import check_definition, held_out_split, run_definition, study_data
    from tests.train.test_data_fmnist import make_fmnist

    (tmp_path / "data" / "fashion-mnist").mkdir(parents=True)
    make_fmnist(tmp_path / "data" / "fashion-mnist", per_class=40, test_per_class=4)
    monkeypatch.setenv("LPL_DATA", str(tmp_path / "data"))
    study = _tiny_study(tmp_path)
    study["datasets"] = {"ml": {"name": "fmnist_ml_lt", "regime": "multilabel",
                                "params": {"num_train": 200, "num_test": 20}}}  # fmt: skip
    st = dict(study, name="ml_split", scale=1.0)
    data = study_data(st, "ml")

    def items(images: torch.Tensor) -> set[bytes]:
        tiles = images[:, 0].unfold(1, 28, 28).unfold(2, 28, 28).reshape(-1, 28, 28)
        return {x.numpy().tobytes() for x in tiles}

    train, val = items(data["train"].images), items(data["val"].images)
    assert len(data["train"].targets) == 150 and len(data["val"].targets) == 50
    assert val and not val & train
    assert data["class_counts"] == data["train"].targets.sum(0).long().tolist()
    assert held_out_split(st, "ml")
    spec = {"dataset": "ml", "loss": "bce", "params": {}, "model_params": {}, "seed": 0, "key": "k"}
    assert run_definition(st, spec)["val_split"] == "held-out source images"
    old = {"definition": {k: v for k, v in run_definition(st, spec).items() if k != "val_split"}}
    with pytest.raises(ValueError, match=r"it differs in val_split\)"):
        check_definition(old, st, spec, tmp_path / "result.json")
    # single-label data keep the stratified split of the built set, and their definitions are unchanged
    single = _tiny_study(tmp_path)
    assert not held_out_split(single, "g") and "val_split" not in run_definition(
        single, S.plan_runs(single)[0]
    )


def test_the_committed_study_selects_no_value_on_an_edge_of_its_grid():
    """Every searched hyper-parameter of the committed study is chosen strictly inside the values it was
    tried at (or at its method's ``grid_floor``): an optimum on a grid's edge means the grid was too
    small. Selection redone here from the raw JSONL (:func:`_selection_runs`)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    spec = tomllib.loads((RECORDS.parent / "fmnist.toml").read_text(encoding="utf-8"))
    floors = {m["id"]: m.get("grid_floor", {}) for m in spec["methods"]}
    records = [json.loads(x) for x in RECORDS.read_text(encoding="utf-8").splitlines()]
    searched = 0
    for (dataset, method), runs in _selection_runs(records).items():
        if len(runs) < 2:
            continue
        searched += 1
        for key, value in _best_point(runs).items():
            values = sorted({p[key] for _, _, p in runs})
            inside = values[0] < value < values[-1] or value == floors[method].get(key)
            assert inside, f"{dataset}/{method}: {key}={value} is an edge of {values}"
    assert searched >= 26


def test_the_study_scores_validation_images_in_order_and_unaugmented(tmp_path):
    """Selection is scored on the validation images themselves: each once, in order, only
    (x/255 − mean)/std, never cropped or flipped (the dataset's training augmentation), in every epoch."""
    import torch

    from lpl_train.data.common import TensorData
    from lpl_train.study_runs import _components, engine_config

    study = _tiny_study(tmp_path)
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g)
    tgt = torch.arange(40) % 2
    mean, std = (0.25,), (0.5,)
    data = {"train": TensorData(imgs, tgt, mean, std), "val": TensorData(imgs, tgt, mean, std),
            "num_classes": 2, "class_counts": [20, 20], "multi_label": False, "augment": "crop_flip"}  # fmt: skip
    spec = S.plan_runs(study)[0]
    comps = _components(study, spec, engine_config(study, spec, {}), data)
    want = (imgs.double() / 255.0 - 0.25) / 0.5
    # the loader in the engine's test slot is the one it scores as the run's "final" (the record's "val")
    for epoch in (0, 1, 3):
        comps.test_loader.set_epoch(epoch)
        xs, ys = zip(*comps.test_loader, strict=True)
        torch.testing.assert_close(torch.cat(xs).double(), want, rtol=0, atol=1e-6)
        assert torch.equal(torch.cat(ys), tgt)


def _figure_rec(d, m, point, seed, val, lv=None, counts=None, ml=False, iso=None):
    r = {"dataset": d, "method": m, "point": point, "seed": seed, "multi_label": ml,
         "val": {"map": val} if ml else {"per_class_acc": [val] * 10}, "loss_variation": lv or []}  # fmt: skip
    if counts is not None:
        r["class_counts"] = counts
    if iso is not None:
        r["isolated_variation"] = iso
    return r


def _drawn_figures(monkeypatch, records, tmp_path):
    from lpl_train import study_figures

    drawn = {}
    monkeypatch.setattr(
        study_figures, "save_figure", lambda fig, path: drawn.setdefault(path.name, fig) and path
    )
    S.loss_variation_figures(records, S.load_study(), tmp_path)
    return drawn


def test_loss_variation_figures_order_classes_head_to_tail_leave_la_off_balanced_and_keep_pos_neg(
    tmp_path, monkeypatch
):
    """Classes by training count, head first (counts below give 9, 2, 7, 4, 1, 6, 3, 0, 8, 5; class k's
    variation is k%); LA is CE on balanced data and is not drawn there; BCE + LPL's pos and neg terms stay
    apart (2% and −40%)."""
    counts = [5, 50, 500, 10, 100, 1, 20, 200, 2, 1000]
    order = [9, 2, 7, 4, 1, 6, 3, 0, 8, 5]
    pos_neg = [
        {"pos": {"relative_variation": [0.02] * 10}, "neg": {"relative_variation": [-0.4] * 10}}
    ]
    records = [
        _figure_rec("fmnist_lt100", "la", {"tau": 1.0}, 0, 60.0,
                    [{"relative_variation": [0.01 * k for k in range(10)]}], counts),
        _figure_rec("fmnist", "la", {"tau": 1.0}, 0, 60.0, [{"relative_variation": [0.5] * 10}]),
        _figure_rec("fmnist", "isda", {"lambda0": 0.5}, 0, 60.0, [{"relative_variation": [0.1] * 10}]),
        _figure_rec("fmnist_ml_lt100", "bce_lpl_varied", {"epsilon": 1.0}, 0, 40.0, pos_neg, ml=True),
    ]  # fmt: skip
    drawn = _drawn_figures(monkeypatch, records, tmp_path)
    fig1 = drawn["fig1-loss-variation.png"].axes
    balanced = {ln.get_label() for ln in fig1[0].get_lines()}
    assert "LA (training)" not in balanced and "ISDA (training)" in balanced
    (la,) = [ln for ln in fig1[1].get_lines() if ln.get_label() == "LA (training)"]
    assert [t.get_text() for t in fig1[1].get_xticklabels()] == [str(c) for c in order]
    assert list(la.get_ydata()) == pytest.approx([float(c) for c in order])
    ml = {
        ln.get_label(): list(ln.get_ydata())
        for ln in drawn["fig11-loss-variation.png"].axes[2].get_lines()
    }
    assert ml["BCE + LPL pos (training)"] == pytest.approx([2.0] * 10)
    assert ml["BCE + LPL neg (training)"] == pytest.approx([-40.0] * 10)


def test_fig11c_r_bce_focal_lpl_is_the_isolated_shift_averaged_over_seeds(tmp_path, monkeypatch):
    """Its isolated pos/neg shift of seeds 0 and 1 at the selected point (0.1 and 0.3, −0.2 and −0.6):
    20% and −40%, not the training variation (900%) nor seed 0's alone."""

    def iso(pos, neg):
        return {
            "pos": {"relative_variation": [pos] * 10},
            "neg": {"relative_variation": [neg] * 10},
        }

    train = [{"pos": {"relative_variation": [9.0] * 10}, "neg": {"relative_variation": [9.0] * 10}}]
    p = {"epsilon": 1.0}
    records = [
        _figure_rec(
            "fmnist_ml_lt100",
            "rbce_focal_lpl_varied",
            p,
            0,
            40.0,
            train,
            ml=True,
            iso=iso(0.1, -0.2),
        ),
        _figure_rec(
            "fmnist_ml_lt100",
            "rbce_focal_lpl_varied",
            p,
            1,
            0.0,
            train,
            ml=True,
            iso=iso(0.3, -0.6),
        ),
    ]
    drawn = _drawn_figures(monkeypatch, records, tmp_path)
    ml = {
        ln.get_label(): list(ln.get_ydata())
        for ln in drawn["fig11-loss-variation.png"].axes[2].get_lines()
    }
    assert ml["R-BCE-Focal + LPL pos (shift alone, trained model)"] == pytest.approx([20.0] * 10)
    assert ml["R-BCE-Focal + LPL neg (shift alone, trained model)"] == pytest.approx([-40.0] * 10)


def test_the_commands_a_table_header_prints_run_as_printed(tmp_path, monkeypatch, capsys):
    """A study run with --out and --figures: its header's "Redraw" and "train what is missing" commands,
    run as printed from the same folder, read the same records and train nothing (they named the records
    file without its folder and left --out out, so the redraw failed and the retrain started afresh)."""
    import re
    import shlex

    import torch

    from lpl_train.__main__ import main

    torch.set_num_threads(1)
    _tiny_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["study", "tiny.toml", "--out", "o", "--figures", "f dir"]) == 0
    tables = tmp_path / "f dir" / "study-tables.md"
    first = tables.read_text()
    redraw = re.search(r"Redraw: `([^`]+)`", first).group(1)
    retrain = re.search(r"train what is missing: `([^`]+)`", first).group(1)
    assert redraw == (
        "lpl-train study tiny.toml --out o --figures 'f dir' --records 'f dir/study-runs.jsonl' "
        "--report-only"
    )
    capsys.readouterr()
    for command in (redraw, retrain):
        argv = shlex.split(command)
        assert argv[0] == "lpl-train" and main(argv[1:]) == 0, command
        assert tables.read_text() == first
    out = capsys.readouterr().out
    assert "skip (finished)" in out and "test error" not in out  # nothing trained again
