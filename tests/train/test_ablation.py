"""The LPL long-tail ablation: the δ-norm recorder, the axis curves of the grid search, the committed
tables against the committed records, and the cosine-head CE that the LDAM decomposition needs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lpl_train import ablation as A
from lpl_train import ablation_report as AR
from lpl_train import perturbation as P
from lpl_train.losses import build_loss

ROOT = Path(__file__).resolve().parents[2]
COUNTS = [400, 200, 100, 50, 25, 12]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Loader:
    epoch = 0


def _batch(seed: int, n: int = 64, c: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    return 3.0 * torch.randn(n, c, generator=g), y


# ------------------------------------------------------------------------------------- δ recorder
def test_delta_recorder_matches_the_perturbation_and_counts_only_training_calls(tmp_path):
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                      delta_epsilon=2.0, alpha=0.25, normalize_step=True)  # fmt: skip
    loader = _Loader()
    rec = A.attach_delta_recorder(loss, loader, tmp_path)
    assert rec is not None
    expected = []
    for epoch, seeds in ((0, (1, 2)), (1, (3,))):
        loader.epoch = epoch
        norms, bounds = [], []
        for s in seeds:
            u, y = _batch(s)
            loss(u.requires_grad_(), y)
            with torch.no_grad():  # the engine's loss-variation call: not a training step
                loss(3 * u, y)
            res = P.single_label_perturbation(u.detach(), y, alpha=0.25, epsilon=0.0, delta_epsilon=2.0,
                                              split="index", head=3, rank=P.class_rank(torch.tensor(COUNTS)),
                                              normalize_step=True)  # fmt: skip
            first = [int((y == c).nonzero()[0]) for c in range(6)]
            norms.append(res.delta[first].norm(dim=1))
            bounds.append(res.bounds)
        expected.append((torch.stack(norms).mean(0), torch.stack(bounds).mean(0), len(seeds)))
    out = rec.close()
    assert len(out) == 2
    for ep, (norm, bound, n) in zip(out, expected, strict=True):
        assert ep["n"] == [n] * 6
        assert torch.allclose(torch.tensor(ep["norm"]), norm, atol=1e-5)
        assert torch.allclose(torch.tensor(ep["bound"]), bound, atol=1e-5)
        assert all(0.0 <= r <= 1.0 + 1e-5 for r in ep["ratio"])
    # the step-normalised loop gets close to the bound for the rarest class (steps of length α)
    assert out[0]["ratio"][5] > 0.9
    # the hook is gone after close; the file holds the same statistics and seeds a resumed recorder
    u, y = _batch(9)
    loss(u.requires_grad_(), y)
    resumed = A.DeltaNormRecorder(loss, loader, tmp_path).result()
    for a, b in zip(resumed, out, strict=True):
        assert a["n"] == b["n"]
        for k in ("norm", "bound", "ratio"):
            assert a[k] == pytest.approx(b[k])
    assert json.loads((tmp_path / A.DELTA_FILE).read_text()) == out


def test_delta_recorder_raw_step_fades_on_fitted_logits():
    """The measurement the mechanism question rests on: on logits that already fit their labels the raw
    step of Eq. 31 is ≈ 0, so δ stays far inside its bound, while the normalised step reaches it."""
    y = torch.arange(60) % 6
    u = 12.0 * F.one_hot(y, 6).float()
    ratios = {}
    for norm in (False, True):
        loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                          delta_epsilon=3.0, alpha=0.25, normalize_step=norm)  # fmt: skip
        rec = A.attach_delta_recorder(loss, _Loader())
        loss(u.clone().requires_grad_(), y)
        ratios[norm] = rec.close()[0]["ratio"]
    assert max(ratios[False]) < 0.01
    assert ratios[True][0] > 0.99 and ratios[True][5] > 0.99


def test_delta_recorder_is_only_for_lpl_losses_and_handles_the_authors_preset():
    assert A.attach_delta_recorder(build_loss("ce"), _Loader()) is None
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, preset="authors_longtail", steps=10,
                      head_scale=0.6, tau=0.5, alpha=0.1, iterations=10)  # fmt: skip
    rec = A.attach_delta_recorder(loss, _Loader())
    u, y = _batch(4)
    loss(u.requires_grad_(), y)
    ep = rec.close()[0]
    ks, _ = P.authors_longtail_schedule(COUNTS, 3, steps=10, head_scale=0.6)
    assert ep["bound"] == pytest.approx([0.1 * (k + 1) for k in ks])
    assert all(n > 0 for n in ep["norm"])


def test_ldam_without_margin_is_the_scaled_cosine_cross_entropy():
    u, y = _batch(5)
    u = u.clamp(-1, 1)
    loss = build_loss("ldam", class_counts=COUNTS, max_m=0.0, s=30.0)
    assert torch.allclose(loss(u, y), F.cross_entropy(30.0 * u, y))
    with pytest.raises(ValueError, match="max_m must be in"):
        build_loss("ldam", class_counts=COUNTS, max_m=-0.1)


# ----------------------------------------------------------------------------------- axis curves
def _rec(point: dict, val_err: float, test_err: float, seed: int = 0) -> dict:
    acc = 100.0 - val_err
    return {"dataset": "lt", "method": "m", "point": point, "seed": seed, "multi_label": False,
            "val": {"per_class_acc": [acc, acc]}, "test": {"top1_error": test_err}}  # fmt: skip


def test_axis_curves_slice_through_the_selected_point_and_flag_edges():
    recs = []
    for a in (1, 2, 3):
        for b in (0.1, 0.2):
            # minimum at a=2, b=0.2 on validation; the test set prefers a=3 (never read)
            recs.append(_rec({"a": a, "b": b}, 10 + abs(a - 2) + (0.2 - b) * 10, 30 - a))
    recs.append(_rec({"a": 3, "b": 0.1}, 0.0, 0.0, seed=1))  # another seed: not a selection run
    c = A.axis_curves(recs)[("lt", "m")]
    assert c["a"]["values"] == [1, 2, 3] and c["a"]["selected"] == 2 and not c["a"]["edge"]
    assert c["a"]["scores"] == pytest.approx([11.0, 10.0, 11.0])
    assert c["b"]["selected"] == 0.2 and c["b"]["edge"]
    assert c["b"]["scores"] == pytest.approx([11.0, 10.0])


# ------------------------------------------------------------------------- committed results
def test_committed_tables_are_those_of_the_committed_records():
    records = A.read_records(ROOT / "figures" / "ablation-runs.jsonl")
    committed = (ROOT / "figures" / "ablation-tables.md").read_text(encoding="utf-8")
    assert A.tables(records) == committed


def test_docs_quote_only_cells_of_the_committed_tables():
    """Every 'mean ± std' in the ablation section of docs/study.md is a cell of figures/ablation-tables.md,
    and the selection it reports was made on validation: the chosen point of every method has the lowest
    seed-0 validation error of its method."""
    tables = (ROOT / "figures" / "ablation-tables.md").read_text(encoding="utf-8")
    docs = (ROOT / "docs" / "study.md").read_text(encoding="utf-8")
    section = docs.split("## The LPL long-tail ablation", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"\d+\.\d\d ± \d+\.\d\d", section)
    assert len(quoted) >= 10
    for q in quoted:
        assert q in tables, f"docs/study.md quotes {q}, not a cell of figures/ablation-tables.md"
    records = [r for r in A.read_records(ROOT / "figures" / "ablation-runs.jsonl")
               if r["study"] == "lpl_ablation"]  # fmt: skip
    for (_d, m), axes in A.axis_curves(records).items():
        sel = [r for r in records if r["method"] == m and r["seed"] == 0]
        best = min(
            100 - sum(r["val"]["per_class_acc"]) / len(r["val"]["per_class_acc"]) for r in sel
        )
        for c in axes.values():
            assert min(s for s in c["scores"] if not math.isnan(s)) == pytest.approx(best)


def test_differentiable_lpl_has_finite_gradients_on_a_batch_without_tail_classes():
    """A batch holding only head classes (e.g. the last, short batch of an epoch) made the q̄-based varied
    bound's unused tail ratio infinite, and the gradient through it NaN with ``differentiable=True``."""
    for y in (torch.tensor([0]), torch.tensor([0, 1, 1]), torch.tensor([5, 4])):
        u = torch.randn(len(y), 6, generator=torch.Generator().manual_seed(0)).requires_grad_()
        loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                          delta_epsilon=1.0, alpha=0.25, differentiable=True)  # fmt: skip
        loss(u, y).backward()
        assert torch.isfinite(u.grad).all(), y


def test_add_records_keeps_the_old_records_and_refuses_a_recorded_run():
    old = [{"study": "b", "key": "k1", "x": 1}, {"study": "a", "key": "k2", "x": 2}]
    new = [{"study": "a", "key": "k1", "x": 3}]
    out = A.add_records(old, new)
    assert [(r["study"], r["key"]) for r in out] == [("a", "k1"), ("a", "k2"), ("b", "k1")]
    assert old[0] in out and old[1] in out and new[0] in out
    with pytest.raises(ValueError, match="different record.*b/k1"):
        A.add_records(old, [{"study": "b", "key": "k1", "x": 9}])
    # a restored run (the same record) is not added twice
    assert A.add_records(old, [dict(old[0]), *new]) == out


def test_seed_noise_rule_of_the_tables():
    """A difference counts only beyond the combined seed std sqrt(s_a² + s_b²); one seed has no spread."""
    assert AR._cmp((10.0, 3.0), (14.99, 4.0)) == "not established (|Δ| 4.99 < 5.00)"
    assert AR._cmp((10.0, 3.0), (15.01, 4.0)) == "lower by 5.01 (> 5.00)"
    assert AR._cmp((20.0, 0.3), (15.0, 0.4)) == "higher by 5.00 (> 0.50)"
    assert AR._cmp((20.0, None), (15.0, 0.4)) == "not established (one seed)"
    assert AR._fmt((12.345, None)) == "12.35" and AR._fmt((12.345, 0.5)) == "12.35 ± 0.50"


def test_delta_rows_of_a_searched_study_take_its_selected_point_only():
    """The ‖δ‖/ε rows of the Q3 studies average the final runs at each method's selected point: for the
    study searched at 10:1 that is one run per seed, not every grid point of the search."""
    from lpl_train.ablation_records import _studies

    studies = _studies(A.read_records(ROOT / "figures" / "ablation-runs.jsonl"))
    name = "lpl_ablation_lt10_search"
    st, rs = studies[name]
    labels = {m["id"]: m["id"] for m in st["methods"]}
    rows = [r for r in AR._length_delta_lines(studies, [name], labels) if r.startswith("| `")]
    assert len(rows) == 4  # the four LPL variants
    for row in rows:
        method = row.split(" | ")[1]
        assert len([r for r in rs if r["method"] == method]) > len(st["seeds"])  # searched
        assert row.endswith(f"| {len(st['seeds'])} |"), row
