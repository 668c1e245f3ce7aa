"""Report aggregation over hand-made run folders, and the paper's tables as transcribed."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from lpl_train.config import dumps_toml, load_config
from lpl_train.report import aggregate, collect_runs, load_paper_results, make_report, paper_cell


def write_run(folder, cfg, seed, final, best_val=None, multi_label=False, best_test=None):
    folder.mkdir(parents=True)
    cfg = json.loads(json.dumps(cfg))
    cfg["train"]["seed"] = seed
    (folder / "config.toml").write_text(dumps_toml(cfg))
    out = {"name": cfg["name"], "seed": seed, "multi_label": multi_label, "final": final,
           "best": best_test or {}}  # fmt: skip
    if best_val is not None:
        out["best_val"] = best_val
    (folder / "final.json").write_text(json.dumps(out))


def test_mean_std_over_seeds_beside_the_paper(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    for seed, err in enumerate([22.0, 23.0, 24.0]):
        write_run(tmp_path / f"s{seed}", cfg, seed, {"top1_error": err, "loss": 1.0},
                  {"val_top1_error": 5.0, "test_top1_error": err - 1.0, "epoch": 3},
                  best_test={"test_top1_error": err - 5.0, "epoch": 2})  # fmt: skip
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.toml").write_text(dumps_toml(cfg))  # no final.json: ignored
    rows = aggregate(collect_runs(tmp_path))
    assert len(rows) == 1
    r = rows[0]
    assert r.label == "tiv_cifar10_lt100_la" and r.seeds == [0, 1, 2]
    assert r.final["top1_error"] == pytest.approx((23.0, 1.0))  # sample std (n - 1)
    # beside the last epoch: the test error at the epoch chosen on validation, never the best test epoch
    assert r.best["top1_error"] == pytest.approx((22.0, 1.0))
    assert r.paper_values == {"top1_error": 22.33}
    md = make_report(tmp_path)
    assert (
        "| tiv_cifar10_lt100_la | IV / LA / 100:1 | 3 | top1_error | 23.00 ± 1.00 | 22.00 ± 1.00 | 22.33 | +0.67 |"
        in md
    )
    rec = list(csv.DictReader(io.StringIO(make_report(tmp_path, "csv"))))
    assert (
        rec[0]["final_mean"] == "23.0"
        and rec[0]["final_std"] == "1.0"
        and rec[0]["best_val_mean"] == "22.0"
        and rec[0]["paper"] == "22.33"
    )
    assert "18.00" not in md and "at best val (%)" in md  # the best test epoch is never shown


def test_without_a_validation_split_only_the_last_epoch_is_reported(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    write_run(
        tmp_path / "s0",
        cfg,
        0,
        {"top1_error": 23.0},
        best_test={"test_top1_error": 9.0, "epoch": 1},
    )
    (row,) = aggregate(collect_runs(tmp_path))
    assert row.best == {}
    assert "| 23.00 | — |" in make_report(tmp_path)


def test_sweep_points_are_separate_rows_labelled_by_what_differs(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    for tau, errs in ((1.0, [20.0, 22.0]), (2.0, [30.0])):
        c = json.loads(json.dumps(cfg))
        c["loss"]["params"]["tau"] = tau
        for seed, e in enumerate(errs):
            write_run(tmp_path / f"tau{tau}" / f"seed{seed}", c, seed, {"top1_error": e})
    rows = {r.label: r for r in aggregate(collect_runs(tmp_path))}
    assert set(rows) == {
        "tiv_cifar10_lt100_la [loss.params.tau=1.0]",
        "tiv_cifar10_lt100_la [loss.params.tau=2.0]",
    }
    assert rows["tiv_cifar10_lt100_la [loss.params.tau=1.0]"].final["top1_error"] == pytest.approx(
        (21.0, math.sqrt(2.0))
    )
    one = rows["tiv_cifar10_lt100_la [loss.params.tau=2.0]"]
    assert one.final["top1_error"] == (30.0, None)  # one seed: no std
    assert "| 30.00 |" in make_report(tmp_path)


def test_multilabel_rows_report_map_and_groups(tmp_path):
    cfg = load_config("tv_voc_mlt_rbce_ntr")
    final = {"map": 78.0, "map_head": 73.0, "map_medium": 84.0, "map_tail": 79.0}
    write_run(tmp_path / "a", cfg, 0, final, {"test_map": 78.5, "epoch": 7}, multi_label=True)
    (r,) = aggregate(collect_runs(tmp_path))
    assert r.metrics == ["map", "map_head", "map_medium", "map_tail"]
    assert r.paper_values["map_tail"] == 78.66
    md = make_report(tmp_path)
    assert "| map_tail | 79.00 | — | 78.66 | +0.34 |" in md
    assert "| map | 78.00 | 78.50 | 78.65 | -0.65 |" in md


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_report(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        make_report(tmp_path)
    with pytest.raises(ValueError, match="fmt must be"):
        make_report(tmp_path, "xlsx")


# ------------------------------------------------------------------------- the transcription
def test_paper_cells_and_same_as_resolution():
    assert paper_cell("I", "Basic", "WRN-28-10") == {"top1_error": 3.82, "top1_error_std": 0.15}
    assert paper_cell("II", "LPL (mean + varied eps)", "ResNet-110")["top1_error"] == 25.87
    assert (
        paper_cell("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "COCO-MLT")["map_tail"]
        == 53.81
    )
    assert paper_cell("VI", "LPL (varied tau + varied eps)", "iNat2018") == {"top1_error": 30.59}
    assert (
        paper_cell("VIII", "SE-ResNet110+LPL (mean + varied eps)", "CIFAR10")["top1_error"] == 5.39
    )
    assert paper_cell("IX", "LA", "CIFAR100-LT100") == {
        "top1_error": 56.11
    }  # resolved from Table III
    assert paper_cell("X", "R-BCE+LPL (varied tau + varied eps)", "MS-COCO") == {"map": 85.4}
    with pytest.raises(ValueError, match="rows: "):
        paper_cell("IV", "Nope", "100:1")
    with pytest.raises(ValueError, match="columns: "):
        paper_cell("IV", "LA", "50:1")
    with pytest.raises(ValueError, match="tables: I, II"):
        paper_cell("XI", "LA", "50:1")
    with pytest.raises(TypeError, match="row must be a string"):
        paper_cell("IV", 3, "100:1")


def test_repeated_numbers_agree_with_the_tables_they_repeat():
    tables = load_paper_results()["tables"]
    for key in ("VII", "IX"):
        for row, cols in tables[key]["printed"].items():
            for col, value in cols.items():
                assert paper_cell(key, row, col)["top1_error"] == value, (key, row, col)
    for col, reduction in tables["VII"]["printed_reduction"].items():
        diff = (
            paper_cell("VII", "LPL", col)["top1_error"] - paper_cell("VII", "LA", col)["top1_error"]
        )
        assert diff == pytest.approx(reduction, abs=1e-9), col


@pytest.mark.parametrize(
    ("a", "b", "claimed"),
    [  # differences the paper's text states, checked against the transcribed tables
        (
            ("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "VOC-MLT"),
            ("V", "R-BCE-Focal+NTR", "VOC-MLT"),
            0.63,
        ),
        (
            ("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "COCO-MLT"),
            ("V", "R-BCE-Focal+NTR", "COCO-MLT"),
            1.21,
        ),
        (
            ("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "VOC-MLT"),
            ("V", "R-BCE-Focal+LC", "VOC-MLT"),
            0.91,
        ),
        (
            ("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "COCO-MLT"),
            ("V", "R-BCE-Focal+LC", "COCO-MLT"),
            0.82,
        ),
        (
            ("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "VOC-MLT"),
            ("V", "R-BCE-Focal", "VOC-MLT"),
            2.18,
        ),
        (
            ("V", "R-BCE-Focal+LPL (varied tau + varied eps)", "COCO-MLT"),
            ("V", "R-BCE-Focal", "COCO-MLT"),
            2.01,
        ),
        (("VI", "LA", "iNat2017"), ("VI", "LPL (varied tau + varied eps)", "iNat2017"), 0.89),
        (("VI", "LA", "iNat2018"), ("VI", "LPL (varied tau + varied eps)", "iNat2018"), 0.97),
        (("III", "LA", "100:1"), ("III", "LPL (varied tau + varied eps)", "100:1"), 0.36),
        (("III", "LA", "10:1"), ("III", "LPL (varied tau + varied eps)", "10:1"), 2.63),
        (
            ("X", "R-BCE+LPL (varied tau + varied eps)", "MS-COCO"),
            ("X", "R-BCE+NTR", "MS-COCO"),
            1.7,
        ),
        (
            ("X", "R-BCE+LPL (varied tau + varied eps)", "MS-COCO"),
            ("X", "R-BCE+LC", "MS-COCO"),
            0.9,
        ),
    ],
)
def test_transcription_reproduces_the_differences_stated_in_the_text(a, b, claimed):
    va, vb = paper_cell(*a), paper_cell(*b)
    key = "map" if "map" in va else "top1_error"
    assert va[key] - vb[key] == pytest.approx(claimed, abs=1e-9)


def test_undefined_group_map_is_left_out_not_a_crash(tmp_path):
    # fmnist_ml_lt100 has no class with < 20 training positives: the engine writes map_tail = null
    cfg = load_config("fmnist_ml_lt100_bce")
    write_run(tmp_path / "s0", cfg, 0,
              {"map": 50.0, "map_head": 60.0, "map_medium": 40.0, "map_tail": None},
              {"val_map": 40.0, "test_map": 51.0, "epoch": 4}, multi_label=True)  # fmt: skip
    write_run(tmp_path / "s1", cfg, 1,
              {"map": 52.0, "map_head": 62.0, "map_medium": 42.0, "map_tail": None},
              {"val_map": 41.0, "test_map": 53.0, "epoch": 4}, multi_label=True)  # fmt: skip
    (row,) = aggregate(collect_runs(tmp_path))
    assert row.final["map"] == pytest.approx((51.0, math.sqrt(2.0)))
    assert row.best["map"] == pytest.approx((52.0, math.sqrt(2.0)))
    assert "map_tail" not in row.final
    md = make_report(tmp_path)
    assert "| map_tail | — | — | — | — |" in md


def _single(folder, cfg, seed, acc, counts, extra=None):
    """A finished single-label run with per-class test accuracy and training counts."""
    write_run(folder, cfg, seed, {"top1_error": 100.0 - sum(acc) / len(acc), "per_class_acc": acc})
    fin = json.loads((folder / "final.json").read_text())
    fin.update({"class_counts": counts, **(extra or {})})
    (folder / "final.json").write_text(json.dumps(fin))


def test_duplicate_seeds_count_once_and_are_flagged(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    counts = [500, 200, 50, 10]
    for i, (seed, a) in enumerate(((0, 80.0), (0, 82.0), (0, 84.0), (1, 90.0))):
        _single(tmp_path / f"r{i}", cfg, seed, [a] * 4, counts)
    (r,) = aggregate(collect_runs(tmp_path))
    assert r.seeds == [0, 1] and r.duplicates == {0: 3} and len(r.runs) == 4
    # seed 0 is the mean of its three runs (error 18), then mean ± std over the two seeds 18 and 10
    assert r.final["top1_error"] == pytest.approx((14.0, math.sqrt(32.0)))
    md = make_report(tmp_path)
    assert "| 2 (duplicate runs: seed 0 ×3) | top1_error |" in md
    row = next(x for x in csv.DictReader(io.StringIO(make_report(tmp_path, "csv"))))
    assert row["n_seeds"] == "2" and row["n_runs"] == "4"


def test_a_ddp_run_is_never_averaged_with_single_process_runs(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    _single(tmp_path / "a", cfg, 0, [80.0] * 4, [500, 200, 50, 10])
    _single(tmp_path / "b", cfg, 1, [82.0] * 4, [500, 200, 50, 10])
    _single(tmp_path / "ddp", cfg, 0, [60.0] * 4, [500, 200, 50, 10], {"run": {"world_size": 4}})
    rows = {r.label: r for r in aggregate(collect_runs(tmp_path))}
    assert set(rows) == {"tiv_cifar10_lt100_la", "tiv_cifar10_lt100_la [DDP × 4 processes]"}
    assert rows["tiv_cifar10_lt100_la"].seeds == [0, 1]
    assert rows["tiv_cifar10_lt100_la [DDP × 4 processes]"].final["top1_error"] == (40.0, None)


def test_seeds_are_one_row_when_their_configs_differ_only_where_a_run_folder_allows(tmp_path):
    """A run written before a config key existed (its default stands for it) and a run watched through
    TensorBoard compute the same config: their seeds are averaged in one row, as the run folder itself
    would resume one with the other's config. A key that changes what is computed still splits them."""
    cfg = load_config("tiv_cifar10_lt100_la")
    old = json.loads(json.dumps(cfg))
    del old["train"]["compile_loss"]  # written before the key existed: its default, False
    watched = json.loads(json.dumps(cfg))
    watched["train"]["tensorboard"] = True
    watched["train"]["capture"] = "off"
    _single(tmp_path / "a", old, 0, [80.0] * 4, [500, 200, 50, 10])
    _single(tmp_path / "b", watched, 1, [82.0] * 4, [500, 200, 50, 10])
    (r,) = aggregate(collect_runs(tmp_path))
    assert r.label == "tiv_cifar10_lt100_la" and r.seeds == [0, 1]
    other = json.loads(json.dumps(cfg))
    other["train"]["compile_loss"] = True  # not the default: another config
    _single(tmp_path / "c", other, 2, [84.0] * 4, [500, 200, 50, 10])
    rows = {r.label: r.seeds for r in aggregate(collect_runs(tmp_path))}
    assert rows == {"tiv_cifar10_lt100_la [train.compile_loss=False]": [0, 1],
                    "tiv_cifar10_lt100_la [train.compile_loss=True]": [2]}  # fmt: skip


def test_single_label_rows_show_many_medium_few_with_the_stated_group_rule(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    # counts rule: many > 100 (classes 0, 1), few < 20 (class 3), medium = class 2
    # ranks rule (30%/30% of 4 classes = 1 each): many = class 0, few = class 3, medium = 1, 2
    _single(tmp_path / "a", cfg, 0, [90.0, 70.0, 50.0, 10.0], [500, 200, 50, 10])
    md = make_report(tmp_path)
    assert md.startswith("Mean ± sample std over distinct seeds; groups: many/head = more than 100")
    assert "the rest medium (the paper's count rule)" in md
    # other thresholds are not the paper's rule, and the header says so
    md_other = make_report(tmp_path, groups="counts:50,10")
    assert "more than 50 training samples" in md_other and "fewer than 10" in md_other
    assert "(the paper's count rule uses 100 and 20)" in md_other
    assert "(the paper's count rule)" not in md_other
    for metric, value in (
        ("error_many", "20.00"),
        ("error_medium", "50.00"),
        ("error_few", "90.00"),
    ):
        assert f"| {metric} | {value} |" in md
    md = make_report(tmp_path, groups="ranks")
    assert "groups: the 30% most frequent training classes (many/head)" in md
    for metric, value in (
        ("error_many", "10.00"),
        ("error_medium", "40.00"),
        ("error_few", "90.00"),
    ):
        assert f"| {metric} | {value} |" in md
    assert "ranks:0.3,0.3" in make_report(tmp_path, "csv", "ranks")
    with pytest.raises(ValueError, match="groups 'thirds'"):
        make_report(tmp_path, groups="thirds")
    # uneven rank fractions: the first is the many (head) share, the second the few (tail) share
    md = make_report(tmp_path, groups="ranks:0.5,0.25")  # 2 many (0, 1), 1 few (3), medium 2
    for metric, value in (
        ("error_many", "20.00"),
        ("error_medium", "50.00"),
        ("error_few", "90.00"),
    ):
        assert f"| {metric} | {value} |" in md
    # a single-label class of exactly 100 samples is medium (many is more than 100)
    _single(tmp_path / "b", cfg, 0, [90.0, 70.0, 50.0, 10.0], [500, 100, 50, 10])
    md = make_report(tmp_path / "b")
    for metric, value in (
        ("error_many", "10.00"),
        ("error_medium", "40.00"),
        ("error_few", "90.00"),
    ):
        assert f"| {metric} | {value} |" in md


def test_rank_fractions_keep_their_order_wherever_they_are_given():
    from lpl_train.report.stats import class_groups_by_rank, parse_groups
    from lpl_train.report.tables import study_groups

    counts = list(range(10, 0, -1))  # class 0 the most frequent
    want = {"many": [0, 1], "medium": [2, 3, 4, 5], "few": [6, 7, 8, 9]}
    assert class_groups_by_rank(counts, (0.2, 0.4)) == want
    assert parse_groups("ranks:0.2,0.4").split(counts) == want
    assert study_groups({"group_fractions": [0.2, 0.4]}).split(counts) == want


def test_rank_groups_never_share_a_class_when_the_roundings_overlap():
    """round(0.5 · 3) + round(0.5 · 3) = 2 + 2 > 3 classes: "many" keeps its 2, "few" gets the one left
    (it used to take 2, putting class 1 in both groups)."""
    from lpl_train.report.stats import class_groups_by_rank, parse_groups

    assert class_groups_by_rank([3, 2, 1], (0.5, 0.5)) == {"many": [0, 1], "medium": [], "few": [2]}
    # 0.3 · 5 = 1.5 and 0.7 · 5 = 3.5 round (to even) to 2 and 4
    assert class_groups_by_rank([50, 40, 30, 20, 10], (0.3, 0.7)) == {
        "many": [0, 1], "medium": [], "few": [2, 3, 4]}  # fmt: skip
    assert parse_groups("ranks:0.5,0.5").split([30, 20, 10])["few"] == [2]
    for c in range(1, 12):  # every class in exactly one group, for fractions summing to <= 1
        for f in ((0.5, 0.5), (0.3, 0.7), (0.25, 0.75), (0.45, 0.45), (1.0, 0.0), (0.0, 1.0)):
            g = class_groups_by_rank(list(range(c, 0, -1)), f)
            assert sorted(g["many"] + g["medium"] + g["few"]) == list(range(c)), (c, f)


def test_count_thresholds_must_be_ints_and_nanmean_skips_any_nan():
    import numpy as np

    from lpl_train.metrics import class_groups
    from lpl_train.report.stats import GroupRule, nanmean

    for many, few in ((100.5, 20), (100, 20.0), (True, True)):
        with pytest.raises(ValueError, match="must be ints"):
            GroupRule("counts", many, few)
        with pytest.raises(ValueError, match="must be ints"):
            class_groups([5, 50, 500], many=many, few=few)
    assert nanmean([1.0, np.float32("nan"), None, 3]) == 2.0


def test_the_count_rule_at_its_boundaries():
    """The paper's rule: many = more than 100 training samples, few = fewer than 20 (multi-label: many =
    at least 100 positives)."""
    from lpl_train.report.stats import GroupRule

    rule = GroupRule()
    assert rule.split([101, 100, 20, 19]) == {"many": [0], "medium": [1, 2], "few": [3]}
    assert rule.split([101, 100, 20, 19], multi_label=True) == {"many": [0, 1], "medium": [2],
                                                                "few": [3]}  # fmt: skip
    for many, few in ((100, 0), (10, 20)):
        with pytest.raises(ValueError, match=rf"0 < few <= many .*got many={many}, few={few}$"):
            GroupRule("counts", many, few)
    # the report's rule is the one the training metrics group their accuracies by
    from lpl_train.metrics import class_groups

    counts = [500, 101, 100, 57, 20, 19, 1, 0]
    assert class_groups(counts) == rule.split(counts) == {
        "many": [0, 1], "medium": [2, 3, 4], "few": [5, 6, 7]}  # fmt: skip


def test_a_malformed_world_size_counts_as_one_process():
    from lpl_train.report.runs import _world_size

    assert _world_size({"run": {"world_size": 4}}) == 4 and _world_size({}) == 1
    for bad in ("2", True, 0, -3, 2.0, None):
        assert _world_size({"run": {"world_size": bad}}) == 1, bad


def test_multilabel_group_map_comes_from_the_per_class_ap_and_the_training_counts(tmp_path):
    cfg = load_config("tv_voc_mlt_rbce_ntr")
    # head: >= 100 positives (classes 0, 1), tail: < 20 (class 4), medium: classes 2, 3
    counts = [300, 100, 99, 20, 19]
    ap = [90.0, 80.0, 60.0, 50.0, 10.0]
    final = {"map": 58.0, "map_head": 1.0, "map_medium": 2.0, "map_tail": 3.0, "ap_per_class": ap}
    write_run(tmp_path / "a", cfg, 0, final, multi_label=True)
    fin = json.loads((tmp_path / "a" / "final.json").read_text())
    fin["class_counts"] = counts
    (tmp_path / "a" / "final.json").write_text(json.dumps(fin))
    (r,) = aggregate(collect_runs(tmp_path))
    assert r.final["map"] == (58.0, None)
    assert r.final["map_head"] == (85.0, None) and r.final["map_medium"] == (55.0, None)
    assert r.final["map_tail"] == (10.0, None)


def test_a_group_rule_spec_reads_back_and_count_thresholds_must_be_integers():
    from lpl_train.report.stats import GroupRule, parse_groups

    # the spec is what the CSV's "groups" column holds: many first, then few
    rule = GroupRule("counts", 50, 10)
    assert rule.spec() == "counts:50,10" and parse_groups("counts:50,10") == rule
    assert parse_groups(rule.spec()) == rule
    assert parse_groups(GroupRule("ranks", fractions=(0.2, 0.4)).spec()) == GroupRule(
        "ranks", fractions=(0.2, 0.4)
    )
    # a fractional count threshold is refused, not truncated to 100
    for spec in ("counts:100.5,20", "counts:100,19.9"):
        with pytest.raises(ValueError, match="count thresholds must be integers"):
            parse_groups(spec)


def test_an_undefined_mean_is_shown_as_the_empty_mark():
    from lpl_train.report.stats import fmt_mean_std, mean_std

    assert mean_std([None, float("nan")]) == (pytest.approx(math.nan, nan_ok=True), None)
    assert fmt_mean_std(mean_std([None, float("nan")])) == "—"
    assert fmt_mean_std((math.nan, 1.0), empty="n/a") == "n/a"
    assert fmt_mean_std(mean_std([1.0, None, 2.0, float("nan"), 3.0])) == "2.00 ± 1.00"


def test_an_empty_class_group_is_left_out_not_shown_as_nan(tmp_path):
    """With every class above 100 training samples there is no few-shot group: its error is undefined
    and left out of the row (never a NaN mean)."""
    cfg = load_config("tiv_cifar10_lt100_la")
    for seed in (0, 1):
        write_run(tmp_path / f"s{seed}", cfg, seed,
                  {"top1_error": 20.0, "per_class_acc": [80.0, 70.0]})  # fmt: skip
        fin = json.loads((tmp_path / f"s{seed}" / "final.json").read_text())
        fin["class_counts"] = [500, 200]
        (tmp_path / f"s{seed}" / "final.json").write_text(json.dumps(fin))
    (row,) = aggregate(collect_runs(tmp_path))
    assert row.final["error_many"] == pytest.approx((25.0, 0.0))
    assert "error_few" not in row.final and "error_medium" not in row.final


def test_folders_that_are_not_reportable_runs_are_skipped(tmp_path):
    """A final.json or diverged.json without config.toml is not a run folder: not collected."""
    cfg = load_config("tiv_cifar10_lt100_la")
    write_run(tmp_path / "ok", cfg, 0, {"top1_error": 20.0})
    for name in ("final.json", "diverged.json"):
        (tmp_path / name[:5]).mkdir()
        (tmp_path / name[:5] / name).write_text(json.dumps({"final": {}}))
    assert [r.path.name for r in collect_runs(tmp_path)] == ["ok"]


def test_a_finished_run_without_config_toml_is_grouped_by_the_config_final_json_keeps(tmp_path):
    """``config.toml`` lost from a finished run whose ``final.json`` keeps its config (as the engine writes
    it): the run still counts for its row (the sweep counts it as finished too), not silently dropped."""
    cfg = load_config("tiv_cifar10_lt100_la")
    for seed, err in ((0, 20.0), (1, 22.0), (2, 27.0)):
        write_run(tmp_path / f"s{seed}", cfg, seed, {"top1_error": err})
    fin = tmp_path / "s2" / "final.json"
    kept = json.loads(fin.read_text())
    kept["config"] = (tmp_path / "s2" / "config.toml").read_text()
    fin.write_text(json.dumps(kept))
    (tmp_path / "s2" / "config.toml").unlink()
    (row,) = aggregate(collect_runs(tmp_path))
    assert row.seeds == [0, 1, 2] and row.final["top1_error"][0] == pytest.approx(23.0)
    kept["config"] = "name = ["
    fin.write_text(json.dumps(kept))
    with pytest.raises(ValueError, match=r"s2/final\.json': key 'config' does not hold a config$"):
        collect_runs(tmp_path)


def test_a_diverged_run_is_named_in_its_row_not_silently_left_out(tmp_path):
    """A run stopped on a non-finite loss (the engine's diverged.json, no final.json) or a study run whose
    record holds no test metrics: left out of the means and named in the seeds column (the row's seed count
    alone used to read as if the seed had never been run); a config whose every seed diverged keeps its row.
    """
    from lpl_train.engine.files import DIVERGED
    from lpl_train.report.runs import DIVERGED as REPORT_DIVERGED

    assert (
        REPORT_DIVERGED == DIVERGED
    )  # the report's name for the engine's file (it imports no torch)
    la, ce = load_config("tiv_cifar10_lt100_la"), load_config("tiv_cifar10_lt100_focal")
    write_run(tmp_path / "la0", la, 0, {"top1_error": 20.0})
    write_run(tmp_path / "la1", la, 1, {"top1_error": 22.0})
    (tmp_path / "la2").mkdir()  # as the engine leaves it: config, metrics, diverged.json
    (tmp_path / "la2" / "config.toml").write_text(
        dumps_toml({**la, "train": {**la["train"], "seed": 2}})
    )
    (tmp_path / "la2" / DIVERGED).write_text(json.dumps({"epoch": 3, "step": 40, "message": "nan",
                                                         "seed": 2, "world_size": 1}))  # fmt: skip
    write_run(tmp_path / "la3", la, 3, {"top1_error": 99.0})  # a study run that diverged
    (tmp_path / "la3" / "result.json").write_text(json.dumps({"test": None, "diverged": "nan"}))
    (tmp_path / "ce0").mkdir()  # an older diverged.json: seed from the config, one process
    (tmp_path / "ce0" / "config.toml").write_text(dumps_toml(ce))
    (tmp_path / "ce0" / DIVERGED).write_text(json.dumps({"epoch": 0, "step": 1, "message": "nan"}))
    runs = collect_runs(tmp_path)
    assert [(r.path.name, r.diverged) for r in runs] == [
        ("ce0", "nan"), ("la0", None), ("la1", None), ("la2", "nan"), ("la3", "nan")]  # fmt: skip
    rows = {r.name: r for r in aggregate(runs)}
    assert rows[la["name"]].seeds == [0, 1] and rows[la["name"]].diverged == [2, 3]
    assert rows[la["name"]].final["top1_error"] == pytest.approx((21.0, 2**0.5))
    assert rows[ce["name"]].seeds == [] and rows[ce["name"]].diverged == [0]
    md = make_report(tmp_path)
    assert "| 2 (seeds 2, 3 diverged) | top1_error | 21.00 ± 1.41 |" in md
    assert "| 0 (seed 0 diverged) | top1_error | — |" in md
    csv_rows = list(csv.DictReader(io.StringIO(make_report(tmp_path, fmt="csv"))))
    assert {(r["config"], r["n_seeds"], r["diverged_seeds"]) for r in csv_rows} == {
        (la["name"], "2", "2 3"), (ce["name"], "0", "0")}  # fmt: skip
    # a seed that diverged in one folder and finished in another counts as finished
    write_run(tmp_path / "la2b", la, 2, {"top1_error": 24.0})
    assert {r.name: r for r in aggregate(collect_runs(tmp_path))}[la["name"]].diverged == [3]


def test_a_malformed_study_record_is_an_error_naming_its_file(tmp_path):
    cfg = load_config("tiv_cifar10_lt100_la")
    write_run(tmp_path / "s0", cfg, 0, {"top1_error": 20.0})
    (tmp_path / "s0" / "result.json").write_text('{"test": {"top1_error": 2')  # cut short
    with pytest.raises(ValueError, match=r"s0/result.json' is not valid JSON"):
        collect_runs(tmp_path)
    (tmp_path / "s0" / "result.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"s0/result.json' holds list, expected a JSON object"):
        collect_runs(tmp_path)


def test_a_two_process_run_is_its_own_labelled_row_and_paper_stds_are_shown(tmp_path):
    from lpl_train.report.runs import ReportRow, to_markdown

    cfg = load_config("tiv_cifar10_lt100_la")
    write_run(tmp_path / "one", cfg, 0, {"top1_error": 20.0})
    write_run(tmp_path / "ddp", cfg, 0, {"top1_error": 21.0})
    fin = json.loads((tmp_path / "ddp" / "final.json").read_text())
    (tmp_path / "ddp" / "final.json").write_text(json.dumps({**fin, "run": {"world_size": 2}}))
    labels = sorted(r.label for r in aggregate(collect_runs(tmp_path)))
    assert labels == ["tiv_cifar10_lt100_la", "tiv_cifar10_lt100_la [DDP × 2 processes]"]
    row = ReportRow(label="x", name="x", paper=None, seeds=[0], metrics=["map"],
                    final={"map": (50.0, None)}, best={}, paper_values={"map": 48.5, "map_std": 0.25},
                    runs=["r"])  # fmt: skip
    assert "| 48.50 ± 0.25 |" in to_markdown([row])


def test_rows_follow_the_paper_s_table_order_then_runs_without_a_paper_cell(tmp_path):
    names = ["fmnist_lt100_ce", "tiv_cifar10_lt100_la", "ti_cifar10_resnet110_ce"]
    for name in names:
        write_run(tmp_path / name, load_config(name), 0, {"top1_error": 20.0})
    rows = aggregate(collect_runs(tmp_path))
    assert [(r.label, (r.paper or {}).get("table")) for r in rows] == [
        ("ti_cifar10_resnet110_ce", "I"),
        ("tiv_cifar10_lt100_la", "IV"),
        ("fmnist_lt100_ce", None),
    ]


def test_a_paper_reference_to_no_cell_is_named_not_shown_as_missing(tmp_path):
    """A [paper] table edited by hand to a column the table lacks: the report names the config file and
    the reference (it printed '—' in the paper column, as for a cell the paper leaves empty)."""
    cfg = load_config("tiv_cifar10_lt100_la")
    write_run(tmp_path / "ok", cfg, 0, {"top1_error": 20.0})
    assert "20.00" in make_report(tmp_path)  # a valid reference reports
    cfg["paper"] = {**cfg["paper"], "column": "50:1"}
    write_run(tmp_path / "bad", cfg, 0, {"top1_error": 21.0})
    with pytest.raises(ValueError, match=r"bad/config\.toml': key 'paper' names no cell: .*50:1"):
        make_report(tmp_path)


def test_a_study_run_not_yet_recorded_is_not_reported_with_its_validation_metrics(tmp_path):
    """A study run's engine evaluates the study's validation split, so its final.json holds validation
    metrics; its test metrics are in result.json. A run stopped between the two (final.json, no record) is
    not finished: averaging its validation error as a test error would mix the two splits in one row."""
    from lpl_train.config import validate_config
    from lpl_train.study_runs import engine_config

    study = {"datasets": {"g": {"name": "gaussian"}}, "model": {"name": "linear"}, "epochs": 2}
    for seed, val_err in ((0, 10.0), (1, 12.0)):
        spec = {"key": f"g/ce/default/seed{seed}", "dataset": "g", "seed": seed, "loss": "ce",
                "model_params": {"in_features": 2}}  # fmt: skip
        cfg = validate_config(engine_config(study, spec, {}))
        write_run(tmp_path / f"seed{seed}", cfg, seed, {"top1_error": val_err})
    # seed 0 was tested and recorded; seed 1 stopped before its test evaluation
    (tmp_path / "seed0" / "result.json").write_text(json.dumps({"test": {"top1_error": 30.0}}))
    (row,) = aggregate(collect_runs(tmp_path))
    assert row.seeds == [0] and row.final["top1_error"] == (30.0, None)
