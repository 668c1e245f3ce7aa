"""The LPL long-tail ablation: the δ-norm recorder, the axis curves of the grid search, the committed
tables against the committed records, and the cosine-head CE that the LDAM decomposition needs."""

from __future__ import annotations

import gzip
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
from lpl_train import study as S
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


def test_delta_recorder_leaves_ignored_rows_out_and_refuses_probability_targets(tmp_path):
    """Ignored rows (ignore_index) have no class: the recorder indexed its counts with the label -100
    (an IndexError). It leaves them out, as the loss does, and records what the kept rows alone give;
    probability targets are refused by name instead of being read as class indices."""
    kw = dict(num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0, delta_epsilon=2.0,
              alpha=0.25, normalize_step=True)  # fmt: skip
    u, y = _batch(4)
    y_ignored = y.clone()
    y_ignored[::5] = -100
    out = {}
    for name, target, logits in (
        ("ignored", y_ignored, u),
        ("kept", y[y_ignored != -100], u[y_ignored != -100]),
    ):
        loss = build_loss("lpl", **kw)
        rec = A.attach_delta_recorder(loss, _Loader(), tmp_path / name)
        loss(logits.clone().requires_grad_(), target)
        out[name] = rec.close()
    assert out["ignored"] == out["kept"] and out["kept"][0]["n"] == [1] * 6
    loss = build_loss("lpl", **kw)
    A.attach_delta_recorder(loss, _Loader(), tmp_path / "probabilities")
    with pytest.raises(ValueError, match="DeltaNormRecorder reads class-index targets"):
        loss(u.clone().requires_grad_(), torch.softmax(u, 1))


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
    records = A.read_records(ROOT / "figures" / A.RECORDS_FILE)
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
    records = [r for r in A.read_records(ROOT / "figures" / A.RECORDS_FILE)
               if r["study"] == "lpl_ablation"]  # fmt: skip
    for (_d, m), axes in A.axis_curves(records).items():
        sel = [r for r in records if r["method"] == m and r["seed"] == 0]
        best = min(
            100 - sum(r["val"]["per_class_acc"]) / len(r["val"]["per_class_acc"]) for r in sel
        )
        for c in axes.values():
            assert min(s for s in c["scores"] if not math.isnan(s)) == pytest.approx(best)


def test_committed_loss_variation_is_zero_where_lpl_takes_no_step():
    """An LPL run with ε = Δε = 0 (no perturbation) has l' = l in every class and epoch, with a logit
    scale and DRW too (the loss variation compares CE(s·u + δ) with CE(s·u), unweighted). The committed
    records of such runs say so: they were measured with that comparison."""
    records = A.read_records(ROOT / "figures" / A.RECORDS_FILE)
    still = [r for r in records if r["loss"] == "lpl"
             and r["params"].get("epsilon", 0.1) == 0 and r["params"].get("delta_epsilon", 0) == 0]  # fmt: skip
    assert any(r["params"].get("scale") for r in still), (
        "no committed record of a scaled, still LPL"
    )
    for r in still:
        assert r["loss_variation"], r["key"]
        for ep in r["loss_variation"]:
            assert all(v in (None, 0.0) for v in ep["relative_variation"]), r["key"]


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
    assert AR._cmp((20.0, 0.0), (20.0, 0.0)) == "equal (no difference, no seed spread)"
    assert AR._cmp((20.0, 0.0), (20.01, 0.0)) == "lower by 0.01 (> 0.00)"
    assert AR._cmp((20.0, 0.5), (20.0, 0.0)) == "not established (|Δ| 0.00 < 0.50)"
    assert AR._fmt((12.345, None)) == "12.35" and AR._fmt((12.345, 0.5)) == "12.35 ± 0.50"


def test_delta_rows_of_a_searched_study_take_its_selected_point_only():
    """The ‖δ‖/ε rows of the Q3 studies average the final runs at each method's selected point: for the
    study searched at 10:1 that is one run per seed, not every grid point of the search."""
    from lpl_train.ablation_records import _studies

    studies = _studies(A.read_records(ROOT / "figures" / A.RECORDS_FILE))
    name = "lpl_ablation_lt10_search"
    st, rs = studies[name]
    labels = {m["id"]: m["id"] for m in st["methods"]}
    rows = [r for r in AR._length_delta_lines(studies, [name], labels) if r.startswith("| `")]
    assert len(rows) == 4  # the four LPL variants
    for row in rows:
        method = row.split(" | ")[1]
        assert len([r for r in rs if r["method"] == method]) > len(st["seeds"])  # searched
        assert row.endswith(f"| {len(st['seeds'])} |"), row


# ------------------------------------------------------------------- δ recorder: more of its rules
def test_delta_recorder_leaves_absent_classes_and_unseen_epochs_empty_and_saves_on_epoch_change(
    tmp_path,
):
    """A class absent from every step of an epoch has no mean (None, n = 0); an epoch never seen is None;
    the statistics reach the file as soon as the epoch changes (a crash loses at most one epoch), a resumed
    recorder reads the gap back, and after close() the loss is no longer watched."""
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                      delta_epsilon=2.0, alpha=0.25, normalize_step=False)  # fmt: skip
    loader = _Loader()
    rec = A.attach_delta_recorder(loss, loader, tmp_path)
    assert rec.result() == [] and not (tmp_path / A.DELTA_FILE).exists()
    u, _ = _batch(1, n=40)
    y = torch.arange(40) % 4  # classes 4 and 5 absent
    loss(u.clone().requires_grad_(), y)
    first = [int((y == c).nonzero()[0]) for c in range(4)]
    norms0 = loss.last_delta[first].norm(dim=1).tolist()
    assert not (tmp_path / A.DELTA_FILE).exists()  # same epoch: nothing written yet
    loader.epoch = 2  # epoch 1 is never seen
    u2, y2 = _batch(2)
    loss(u2.clone().requires_grad_(), y2)
    on_disk = json.loads((tmp_path / A.DELTA_FILE).read_text())
    assert len(on_disk) == 1 and on_disk[0]["n"] == [1, 1, 1, 1, 0, 0]
    assert on_disk[0]["norm"][4:] == [None, None] and on_disk[0]["ratio"][4:] == [None, None]
    assert on_disk[0]["norm"][:4] == pytest.approx(norms0, rel=1e-6)
    out = rec.close()
    assert len(out) == 3 and out[1] is None and out[2]["n"] == [1] * 6
    assert out[0]["n"] == [1, 1, 1, 1, 0, 0] and out[0]["bound"][4:] == [None, None]
    # after close the hook is gone: a training call changes nothing
    loss(u2.clone().requires_grad_(), y2)
    assert rec.result() == out
    resumed = A.DeltaNormRecorder(loss, loader, tmp_path)
    back = resumed.result()
    resumed.close()
    assert len(back) == 3 and back[1] is None and back[0]["n"] == out[0]["n"]
    assert back[0]["norm"][4:] == [None, None]
    assert back[0]["norm"][:4] == pytest.approx(out[0]["norm"][:4], rel=1e-6)


def _recording_two_steps_per_epoch(tmp_path):
    """(long-tail LPL loss, a loader of two steps per epoch, the δ recorder attached to both)."""

    class Loader(_Loader):
        def __len__(self):
            return 2

    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                      delta_epsilon=2.0, alpha=0.25)  # fmt: skip
    loader = Loader()
    return loss, loader, A.attach_delta_recorder(loss, loader, tmp_path)


def test_delta_recorder_writes_an_epoch_at_its_last_step_and_a_resumed_run_recounts_retrained_epochs(
    tmp_path,
):
    """An epoch is on disk after its last step (the loader's length), before the engine's checkpoint, so a
    crash between that checkpoint and the next epoch's first step loses nothing; a resumed process whose
    first step is in an epoch already on disk (cut short before its checkpoint) counts it afresh."""

    loss, loader, rec = _recording_two_steps_per_epoch(tmp_path)
    for s in (1, 2):
        loss(_batch(s)[0].requires_grad_(), _batch(s)[1])
    on_disk = json.loads((tmp_path / A.DELTA_FILE).read_text())
    assert len(on_disk) == 1 and on_disk[0]["n"] == [2] * 6  # written without an epoch change
    loader.epoch = 1
    loss(_batch(3)[0].requires_grad_(), _batch(3)[1])  # epoch 1 cut short: one step, then a crash
    rec.save()
    rec.handle.remove()
    # resumed from the checkpoint after epoch 0: epoch 1 is trained again, from its first step
    again = A.attach_delta_recorder(loss, loader, tmp_path)
    for s in (3, 4):
        loss(_batch(s)[0].requires_grad_(), _batch(s)[1])
    out = again.close()
    assert [ep["n"] for ep in out] == [[2] * 6, [2] * 6]  # not 3: the cut-short step is not kept
    assert out[0]["norm"] == pytest.approx(on_disk[0]["norm"])


def test_delta_recorder_writes_every_epoch_of_one_process_at_its_last_step(tmp_path):
    """Each epoch is on disk after its own last step, not only the first epoch: the step count starts
    afresh at every epoch (a count running on over the epochs never meets the loader's length again, and
    an epoch would then reach the file only at the next epoch's first step)."""

    loss, loader, rec = _recording_two_steps_per_epoch(tmp_path)
    for epoch in range(3):
        loader.epoch = epoch
        for s in (2 * epoch + 1, 2 * epoch + 2):
            loss(_batch(s)[0].requires_grad_(), _batch(s)[1])
        on_disk = json.loads((tmp_path / A.DELTA_FILE).read_text())
        assert [ep["n"] for ep in on_disk] == [[2] * 6] * (epoch + 1), epoch
    rec.close()


def test_delta_recorder_of_a_loss_never_called_is_empty(tmp_path):
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5)
    assert A.attach_delta_recorder(loss, _Loader(), tmp_path).close() == []
    assert json.loads((tmp_path / A.DELTA_FILE).read_text()) == []


def test_delta_recorder_authors_preset_bound_wraps_the_last_snapshot_index():
    """K_c = −1 selects the last of the ``iterations`` snapshots, so its bound is α·iterations."""
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, preset="authors_longtail", steps=10,
                      head_scale=0.01, tau=0.5, alpha=0.1, iterations=10)  # fmt: skip
    # by hand: head K = round(n_c/400·0.01·10 − 1) = −1 for the three head classes; tail K = round(12/n_c·10 − 1)
    ks = [-1, -1, -1, round(12 / 50 * 10 - 1), round(12 / 25 * 10 - 1), round(12 / 12 * 10 - 1)]
    assert ks == [-1, -1, -1, 1, 4, 9]
    rec = A.attach_delta_recorder(loss, _Loader())
    u, y = _batch(4)
    loss(u.requires_grad_(), y)
    ep = rec.close()[0]
    assert ep["bound"] == pytest.approx([0.1 * (10 if k < 0 else k + 1) for k in ks], rel=1e-6)


def test_delta_recorder_bound_of_la_lpl_is_that_of_the_adjusted_logits():
    """LA + LPL perturbs u + λ·log π: ε_c (which reads q̄ of those logits) must be computed on them too."""
    kw = dict(
        split="index", tau=0.5, epsilon=0.0, delta_epsilon=3.0, alpha=0.25, normalize_step=False
    )
    loss = build_loss("la_lpl", num_classes=6, class_counts=COUNTS, lam=1.0, **kw)
    rec = A.attach_delta_recorder(loss, _Loader())
    u, y = _batch(6)
    u = u / 3.0
    loss(u.clone().requires_grad_(), y)
    ep = rec.close()[0]
    prior = torch.tensor(COUNTS, dtype=torch.float32)
    ref = {}
    for name, logits in (("adjusted", u + torch.log(prior / prior.sum())), ("raw", u)):
        res = P.single_label_perturbation(logits, y, alpha=0.25, epsilon=0.0, delta_epsilon=3.0,
                                          split="index", head=3, rank=P.class_rank(torch.tensor(COUNTS)))  # fmt: skip
        ref[name] = res.bounds.tolist()
    assert ep["bound"] == pytest.approx(ref["adjusted"], rel=1e-5)
    assert ep["bound"] != pytest.approx(ref["raw"], rel=1e-3)  # the check can tell the two apart


def test_delta_recorder_ratio_is_zero_where_the_bound_is_zero():
    """Δε = 0 and ε = 0 (the grids' "no step" point): ε_c = 0 and δ = 0, recorded as ratio 0, not 1."""
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                      delta_epsilon=0.0, alpha=0.25)  # fmt: skip
    rec = A.attach_delta_recorder(loss, _Loader())
    u, y = _batch(7)
    loss(u.requires_grad_(), y)
    ep = rec.close()[0]
    assert ep["bound"] == [0.0] * 6 and ep["ratio"] == [0.0] * 6 and ep["norm"] == [0.0] * 6


def test_delta_recorder_bound_with_a_logit_scale_is_that_of_the_scaled_logits():
    """With ``scale`` the loss perturbs s·u, so ε_c (from q̄ of those logits) must be computed on s·u
    (the recorder once read the unscaled u: the cosine-head runs of ablation_q5.toml recorded a wrong ε_c
    and ‖δ_c‖/ε_c)."""
    loss = build_loss("lpl", num_classes=6, class_counts=COUNTS, split="index", tau=0.5, epsilon=0.0,
                      delta_epsilon=3.0, alpha=0.25, normalize_step=False, scale=30.0)  # fmt: skip
    rec = A.attach_delta_recorder(loss, _Loader())
    u, y = _batch(1)
    u = u.clamp(-1, 1)  # cosine-head logits
    loss(u.clone().requires_grad_(), y)
    ep = rec.close()[0]
    res = P.single_label_perturbation(30.0 * u, y, alpha=0.25, epsilon=0.0, delta_epsilon=3.0, split="index",
                                      head=3, rank=P.class_rank(torch.tensor(COUNTS)))  # fmt: skip
    first = [int((y == c).nonzero()[0]) for c in range(6)]
    assert ep["norm"] == pytest.approx(res.delta[first].norm(dim=1).tolist(), rel=1e-5)
    assert ep["bound"] == pytest.approx(res.bounds.tolist(), rel=1e-5)


# ----------------------------------------------------------------------------------- command line
def _result(folder: Path, study: str, key: str, **extra) -> dict:
    dataset, method = key.split("/")[:2]
    rec = {"study": study, "key": key, "dataset": dataset, "method": method, "seed": int(key[-1]),
           "point": {}, **extra}  # fmt: skip
    (folder / "runs" / key).mkdir(parents=True, exist_ok=True)
    (folder / "runs" / key / "result.json").write_text(json.dumps(rec))
    return rec


def test_cli_collect_add_and_restore(tmp_path, capsys):
    """--collect writes every finished run (sorted by study and key, keys sorted); --add keeps the records
    there; --restore writes back the records of the named study only and reports nothing."""
    figs = tmp_path / "figs"
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = _result(a, "lpl_ablation_e48", "d/m/p/seed1", z=1, a=2)
    r0 = _result(a, "lpl_ablation_e48", "d/m/p/seed0", z=3)
    (a / "runs" / "d/m/q/seed0").mkdir(parents=True)  # unfinished: no result.json
    assert A.main(["--collect", str(a), "--figures", str(figs)]) == 0
    lines = gzip.decompress((figs / A.RECORDS_FILE).read_bytes()).decode().splitlines()
    assert lines == [json.dumps(r, sort_keys=True) for r in (r0, r1)]
    assert "No records of the main ablation study." in (figs / "ablation-tables.md").read_text()
    r2 = _result(b, "lpl_ablation_q5", "d/n/p/seed0")
    assert A.main(["--collect", str(b), "--add", "--figures", str(figs)]) == 0
    assert A.read_records(figs / A.RECORDS_FILE) == [r0, r1, r2]
    assert A.main(["--collect", str(b), "--figures", str(figs)]) == 0  # without --add: replaced
    assert A.read_records(figs / A.RECORDS_FILE) == [r2]
    capsys.readouterr()
    # --restore: only the records of the named study, and no report
    A.main(["--collect", str(a), str(b), "--figures", str(figs)])
    (figs / "ablation-tables.md").unlink()
    out = tmp_path / "restored"
    assert A.main(["--restore", "lpl_ablation_e48", str(out), "--figures", str(figs)]) == 0
    assert f"{out}: 2 of 2 records of lpl_ablation_e48 restored" in capsys.readouterr().out
    found = sorted(p.relative_to(out / "runs").parent.as_posix() for p in out.rglob("result.json"))
    assert found == ["d/m/p/seed0", "d/m/p/seed1"]
    assert not (figs / "ablation-tables.md").exists()


def test_cli_restore_goes_on_to_the_report_when_asked(tmp_path, capsys):
    """--restore with --report-only (or --collect) restores the run folders and then does the rest of the
    request: the report is rebuilt, not skipped."""
    figs, a = tmp_path / "figs", tmp_path / "a"
    _result(a, "lpl_ablation_e48", "d/m/p/seed0")
    assert A.main(["--collect", str(a), "--figures", str(figs)]) == 0
    (figs / "ablation-tables.md").unlink()
    out = tmp_path / "restored"
    argv = ["--restore", "lpl_ablation_e48", str(out), "--report-only", "--figures", str(figs)]
    assert A.main(argv) == 0
    assert f"{out}: 1 of 1 records of lpl_ablation_e48 restored" in capsys.readouterr().out
    assert (out / "runs" / "d/m/p/seed0" / "result.json").is_file()
    assert "No records of the main ablation study." in (figs / "ablation-tables.md").read_text()
    # with --collect: the collected folder's records are written, then reported
    b = tmp_path / "b"
    r2 = _result(b, "lpl_ablation_q5", "d/n/p/seed0")
    (figs / "ablation-tables.md").unlink()
    argv = ["--restore", "lpl_ablation_e48", str(tmp_path / "r2"), "--collect", str(b), "--figures",
            str(figs)]  # fmt: skip
    assert A.main(argv) == 0
    assert A.read_records(figs / A.RECORDS_FILE) == [r2]
    assert (figs / "ablation-tables.md").is_file()


def test_cli_refuses_incomplete_requests(tmp_path, capsys):
    for argv, msg in (
        ([], "give --collect"),
        (["--report-only", "--add"], "--add needs --collect"),
        (["--restore", "nope", str(tmp_path / "o")], "unknown study 'nope'"),
    ):
        with pytest.raises(SystemExit) as exc:
            A.main([*argv, "--figures", str(tmp_path)])
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    """A missing records file, a damaged one, a missing --collect folder and a conflicting --add are one
    line on stderr and exit status 2, as in lpl-train, not a traceback."""
    figs = tmp_path / "figs"
    a = tmp_path / "a"
    _result(a, "lpl_ablation_e48", "d/m/p/seed0", x=0)
    cases = [
        (["--report-only"], "do not exist; run `make ablation`"),
        (["--collect", str(tmp_path / "missing")], "does not exist"),
    ]
    for argv, msg in cases:
        assert A.main([*argv, "--figures", str(figs)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m lpl_train.ablation: error: ") and msg in err
        assert err.count("\n") == 1
    assert A.main(["--collect", str(a), "--figures", str(figs)]) == 0
    _result(a, "lpl_ablation_e48", "d/m/p/seed0", x=1)  # the same run, another record
    capsys.readouterr()
    assert A.main(["--collect", str(a), "--add", "--figures", str(figs)]) == 2
    assert "different record" in capsys.readouterr().err
    (figs / A.RECORDS_FILE).write_bytes(gzip.compress(b"{}\n"))
    assert A.main(["--report-only", "--figures", str(figs)]) == 2
    assert "line 1: record None lacks study" in capsys.readouterr().err


def test_cli_collect_writes_no_records_the_report_refuses(tmp_path, capsys):
    """Records of another study, or of the ablation's in another mode, are refused before they are written:
    the records already there (with --add or without) stay as they were and --report-only still works."""
    figs, a = tmp_path / "figs", tmp_path / "a"
    _result(a, "lpl_ablation_e48", "d/m/p/seed0")
    assert A.main(["--collect", str(a), "--figures", str(figs)]) == 0
    before = (figs / A.RECORDS_FILE).read_bytes()
    other, quick = tmp_path / "other", tmp_path / "quick"
    _result(other, "fmnist", "d/m/p/seed0")
    _result(quick, "lpl_ablation", "fmnist_lt100/ce/default/seed0", quick=True, epochs=12)
    capsys.readouterr()
    for folder, msg in ((other, "unknown studies ['fmnist']"), (quick, "with quick true")):
        for add in ([], ["--add"]):
            assert A.main(["--collect", str(folder), *add, "--figures", str(figs)]) == 2
            assert msg in capsys.readouterr().err
            assert (figs / A.RECORDS_FILE).read_bytes() == before
    assert A.main(["--report-only", "--figures", str(figs)]) == 0


# ---------------------------------------------------------------------------------------- records
def test_collect_reads_every_finished_run_of_every_folder_sorted_by_study_and_key(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = _result(a, "lpl_ablation_q5", "d/m/p/seed0")
    rb1 = _result(b, "lpl_ablation_e48", "d/z/p/seed1")
    rb0 = _result(b, "lpl_ablation_e48", "d/z/p/seed0")
    assert A.collect([a, b]) == [rb0, rb1, ra]
    assert A.collect([a]) == [ra]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        A.collect([a, tmp_path / "missing"])


def test_collect_keeps_a_run_found_twice_once_and_refuses_two_different_records(tmp_path):
    """A folder given twice, or a run restored into a second folder, is one run: counted twice it would
    double the run counts and run-minutes of the tables and the n of their validation spread."""
    a, b = tmp_path / "a", tmp_path / "b"
    r0 = _result(a, "lpl_ablation_q5", "d/m/p/seed0", x=0)
    r1 = _result(a, "lpl_ablation_q5", "d/m/p/seed1")
    _result(b, "lpl_ablation_q5", "d/m/p/seed0", x=0)
    assert A.collect([a, a]) == [r0, r1]
    assert A.collect([a, b]) == [r0, r1]
    _result(b, "lpl_ablation_q5", "d/m/p/seed0", x=1)
    with pytest.raises(
        ValueError, match=r"lpl_ablation_q5/d/m/p/seed0 has two different records: .*a/runs"
    ):
        A.collect([a, b])


def test_collect_names_a_result_file_that_is_not_a_record(tmp_path):
    _result(tmp_path, "lpl_ablation_q5", "d/m/p/seed0")
    bad = tmp_path / "runs" / "d/m/p/seed0" / "result.json"
    bad.write_text('{"study": "lpl_abl')  # cut short
    with pytest.raises(ValueError, match=r"seed0/result.json' is not valid JSON"):
        A.collect([tmp_path])
    bad.write_text(json.dumps({"study": "lpl_ablation_q5", "key": "d/m/p/seed0"}))
    with pytest.raises(ValueError, match=r"seed0/result.json' is not a record .*lacks dataset"):
        A.collect([tmp_path])


def test_add_records_names_at_most_five_conflicts():
    old = [{"study": "s", "key": f"k{i}", "x": 0} for i in range(7)]
    with pytest.raises(ValueError) as exc:
        A.add_records(old, [dict(r, x=1) for r in old])
    msg = str(exc.value)
    assert msg.endswith(" ...") and "s/k4" in msg and "s/k5" not in msg
    with pytest.raises(ValueError) as exc:
        A.add_records(old, [dict(r, x=1) for r in old[:2]])
    assert not str(exc.value).endswith("...")


def test_read_records_skips_blank_lines_and_names_a_missing_file(tmp_path):
    p = tmp_path / "r.jsonl"
    rec = {"study": "s", "dataset": "d", "method": "m", "seed": 0, "point": {}}
    p.write_text(
        json.dumps({**rec, "key": "a"}) + "\n\n  \n" + json.dumps({**rec, "key": "b"}) + "\n"
    )
    assert [r["key"] for r in A.read_records(p)] == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="make ablation"):
        A.read_records(tmp_path / "none.jsonl")


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ('{"study": "s", "key": "a"', "line 3 is not JSON (Expecting ',' delimiter"),
        ("[1, 2]", "line 3: a record is a JSON object, got list"),
        (
            '{"study": "s", "key": "a", "seed": 0}',
            "line 3: record 'a' lacks dataset, method, point",
        ),
    ],
)
def test_read_records_names_the_file_and_line_of_a_bad_record(tmp_path, line, msg):
    """A damaged or foreign line is one error naming the file and the line, for the ablation's gzip
    records and a study's JSONL alike, not a JSONDecodeError or a KeyError later in the report."""
    good = json.dumps(
        {"study": "s", "key": "k", "dataset": "d", "method": "m", "seed": 0, "point": {}}
    )
    text = f"{good}\n\n{line}\n{good}\n"
    (tmp_path / "r.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "s.jsonl").write_text(text)
    for read, name in ((A.read_records, "r.jsonl.gz"), (S.read_records, "s.jsonl")):
        with pytest.raises(ValueError, match=re.escape(msg)) as exc:
            read(tmp_path / name)
        assert str(tmp_path / name) in str(exc.value)
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot be read: Not a gzipped file"):
        A.read_records(tmp_path / "bad.jsonl.gz")
    (tmp_path / "bad.jsonl").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="are not UTF-8 text"):
        S.read_records(tmp_path / "bad.jsonl")


def test_records_of_an_unknown_study_are_refused():
    from lpl_train.ablation_records import _studies

    assert _studies([]) == {}
    with pytest.raises(ValueError, match=r"unknown studies \['other'\]"):
        _studies([{"study": "other", "key": "k"}])
    with pytest.raises(ValueError, match="unknown studies"):
        A.tables([{"study": "other", "key": "k"}])


# --------------------------------------------------------------------------- axis curves: edges
def test_axis_curves_edge_at_the_smallest_value_gaps_and_single_value_axes():
    recs = [
        _rec({"a": a, "b": b, "c": 7}, 10 + a + (b == 0.1), 0)
        for a in (1, 2, 3)
        for b in (0.1, 0.2)
        if (a, b) != (2, 0.2)  # a grid point that never ran
    ]
    c = A.axis_curves(recs)[("lt", "m")]
    assert set(c) == {"a", "b"}  # c has one value: no curve
    assert c["a"]["selected"] == 1 and c["a"]["edge"]  # the smallest value is an edge too
    assert c["a"]["values"] == [1, 2, 3]
    assert c["a"]["scores"][0] == pytest.approx(11.0) and math.isnan(c["a"]["scores"][1])
    assert c["a"]["scores"][2] == pytest.approx(13.0)
    assert c["b"]["values"] == [0.1, 0.2] and c["b"]["selected"] == 0.2 and c["b"]["edge"]


def test_axis_curves_interior_in_a_grid_of_four_and_the_selection_seed_and_dataset():
    """Interior: neither end of the sorted axis (the second and third of four values); the curves of the
    other seed are those of ``select_seed``; datasets are kept apart."""
    recs = [_rec({"a": a}, {1: 12.0, 2: 11.0, 3: 10.0, 4: 13.0}[a], 0) for a in (4, 2, 1, 3)]
    recs += [_rec({"a": a}, 20.0 - a, 0, seed=1) for a in (1, 2, 3, 4)]
    other = [dict(_rec({"a": a}, float(a), 0), dataset="bal") for a in (1, 2)]
    curves = A.axis_curves(recs + other)
    c = curves[("lt", "m")]["a"]
    assert c["values"] == [1, 2, 3, 4] and c["selected"] == 3 and not c["edge"]
    assert c["scores"] == pytest.approx([12.0, 11.0, 10.0, 13.0])
    s1 = A.axis_curves(recs + other, select_seed=1)[("lt", "m")]["a"]
    assert (
        s1["selected"] == 4
        and s1["edge"]
        and s1["scores"] == pytest.approx([19.0, 18.0, 17.0, 16.0])
    )
    b = curves[("bal", "m")]["a"]
    assert b["values"] == [1, 2] and b["selected"] == 1 and b["scores"] == pytest.approx([1.0, 2.0])
    # the table row marks the selected value and the place of the optimum
    study = {"select_seed": 0, "methods": [{"id": "m"}]}
    summary = {("lt", "m"): {"point": {"a": 3}}}
    (row,) = AR._curve_rows(recs, study, "lt", {"m": "M"}, summary)
    assert row.startswith("| M | a | 1: 12.00 · 2: 11.00 · **3: 10.00** · 4: 13.00 | interior | ")
    # an optimum at the axis's smallest value is "floor" only where that value is the method's grid_floor
    low = [_rec({"a": a}, 10.0 + a, 0) for a in (1, 2, 3)]
    places = []
    for floor in ({"a": 1}, {"a": 0}, {"b": 1}, {}):
        st = {"select_seed": 0, "methods": [{"id": "m", "grid_floor": floor}]}
        (row,) = AR._curve_rows(low, st, "lt", {"m": "M"}, {("lt", "m"): {"point": {"a": 1}}})
        places.append(row.split(" | ")[3])
    assert places == ["floor", "EDGE", "EDGE", "EDGE"]
    high = [_rec({"a": a}, 10.0 - a, 0) for a in (1, 2, 3)]  # the optimum at the top is an edge
    st = {"select_seed": 0, "methods": [{"id": "m", "grid_floor": {"a": 1}}]}
    (row,) = AR._curve_rows(high, st, "lt", {"m": "M"}, {("lt", "m"): {"point": {"a": 3}}})
    assert row.split(" | ")[3] == "EDGE"


def test_validation_spread_is_the_sample_std_of_the_non_diverged_runs_at_the_selected_point():
    import statistics

    recs = [_rec({"a": 1}, v, 0, seed=s) for s, v in enumerate((10.0, 12.5, 11.0))]
    recs.append(_rec({"a": 2}, 1.0, 0, seed=1))  # another grid point
    recs.append(dict(_rec({"a": 1}, 90.0, 0, seed=3), diverged="non-finite loss"))
    summary = {("lt", "m"): {"point": {"a": 1}}}
    expected = statistics.stdev([10.0, 12.5, 11.0])  # the sample std (n − 1)
    assert AR._val_spread(recs, "lt", "m", summary) == f"{expected:.2f} (n=3)"
    assert f"{expected:.2f}" != f"{statistics.pstdev([10.0, 12.5, 11.0]):.2f}"
    assert AR._val_spread(recs[:1] + recs[3:], "lt", "m", summary) == "–"  # one seed: no spread
    assert AR._val_spread(recs, "lt", "other", summary) == "–"
    assert AR._val_spread(recs, "lt", "m", {}) == "–"  # no summary of the method


def _dn(ratios: list, norms: list | None = None) -> list:
    """delta_norm of one run: per epoch the per-class ratio (and norm) lists (None: epoch not recorded)."""
    return [None if r is None else {"ratio": r, "norm": norms[i] if norms else r, "bound": r, "n": [1] * len(r)}
            for i, r in enumerate(ratios)]  # fmt: skip


def test_ratio_cells_average_the_many_and_few_classes_at_the_first_and_last_epoch():
    groups = {"many": [0, 1], "few": [3]}
    r1 = {"delta_norm": _dn([[0.1, 0.3, 9.0, 0.5], [9.0] * 4, [0.2, None, 9.0, 0.8]])}
    r2 = {"delta_norm": _dn([[0.5, 0.7, 9.0, None], None, [0.4, 0.6, 9.0, 1.0]])}
    r3 = {
        "delta_norm": _dn([[0.9, 0.9, 9.0, 0.9]])
    }  # a shorter record: only its first epoch counts
    r4 = {"delta_norm": _dn([None, None, None])}  # no epoch recorded
    cells = AR._ratio_cells([r1, r2, r3, r4], groups, 3)
    # many, epoch 1: 0.1 0.3 0.5 0.7 0.9 0.9 → 3.4/6; many, last: 0.2 0.4 0.6 → 0.4;
    # few, epoch 1: 0.5 0.9 → 0.7 (None skipped); few, last: 0.8 1.0 → 0.9
    assert cells == [f"{3.4 / 6:.2f}", "0.40", "0.70", "0.90"]
    assert AR._ratio_cells([{"delta_norm": []}, {}], groups, 3) == ["–"] * 4
    assert AR._delta_mean([r1], "norm", [3], [2]) == pytest.approx(0.8)


def test_loss_variation_cells_are_percent_means_over_epochs_seeds_and_classes():
    r1 = {"loss_variation": [{"relative_variation": [0.1, -0.2, None]}, None,
                             {"relative_variation": [0.3, 0.0, 0.5]}]}  # fmt: skip
    r2 = {"loss_variation": [{"relative_variation": [None, 0.4, 0.7]}]}
    # classes 0, 2: 0.1, 0.3, 0.5, 0.7 (None skipped) → 0.4 → 40 %
    assert AR._variation([r1, r2], [0, 2]) == pytest.approx(40.0)
    assert AR._variation([r1, r2], [1]) == pytest.approx(100 * 0.2 / 3)
    assert math.isnan(AR._variation([{"loss_variation": []}], [0]))


def test_seed_noise_rule_at_equality_and_formatting_of_missing_cells():
    """|Δ| equal to the combined std is established (only a smaller one is not)."""
    assert AR._cmp((10.0, 3.0), (15.0, 4.0)) == "lower by 5.00 (> 5.00)"
    assert AR._cmp((10.0, 3.0), (15.0, None)) == "not established (one seed)"
    assert AR._fmt((math.nan, 1.0)) == "–" and AR._fmt((None, None)) == "–"
    assert AR._fmt((math.nan, None)) == "–"
    assert AR._point_text({}) == "–" and AR._point_text({"a": 1, "b": 0.5}) == "a=1, b=0.5"


# -------------------------------------------------------------------------------------- figures
def _study_rec(study, method, point, seed, val_acc, err, ratio=None, lv=None):
    c = 10
    return {"study": study, "dataset": "fmnist_lt100", "method": method, "point": point, "seed": seed,
            "key": f"fmnist_lt100/{method}/{point}/seed{seed}", "multi_label": False,
            "class_counts": [1600, 959, 575, 345, 206, 124, 74, 44, 26, 16],
            "val": {"per_class_acc": [val_acc] * c},
            "test": {"top1_error": err, "per_class_acc": [100.0 - err] * c},
            "delta_norm": [] if ratio is None else _dn(
                [[ratio(e, k) for k in range(c)] for e in range(2)],
                [[3.0 * ratio(e, k) for k in range(c)] for e in range(2)]),  # ‖δ‖ ≠ ratio
            "loss_variation": [{"relative_variation": [lv] * c}] if lv is not None else []}  # fmt: skip


def test_figures_draw_the_selected_points_only(tmp_path, monkeypatch):
    """ablation-axes: the star on the selected value; ablation-delta and -loss-variation: the runs of the
    selected point (all seeds), never the grid point that lost on validation; ablation-length: the mean
    test error per setting."""

    def norm(*args, **kw):  # a run of the step-normalised LPL of the main study
        return _study_rec("lpl_ablation", "lpl_norm", *args, **kw)

    recs = [
        norm({"delta_epsilon": 0.5}, 0, 80.0, 30.0, ratio=lambda e, k: 0.1 * k + e, lv=0.1),
        norm({"delta_epsilon": 0.5}, 1, 10.0, 34.0, ratio=lambda e, k: 0.3 * k + e, lv=0.3),
        norm({"delta_epsilon": 1.0}, 0, 70.0, 1.0, ratio=lambda e, k: 50.0, lv=50.0),
        norm({"delta_epsilon": 2.0}, 0, 60.0, 1.0),
        norm({"delta_epsilon": 0.25}, 0, 65.0, 1.0),
        _study_rec("lpl_ablation", "ce", {}, 0, 50.0, 40.0, lv=0.0),
        _study_rec("lpl_ablation_e48", "ce", {}, 0, 50.0, 35.0),
        _study_rec("lpl_ablation_e48", "ce", {}, 1, 50.0, 39.0),
    ]
    for r in recs[-2:]:  # few-shot error 90 ≠ overall: the figure shows overall
        r["test"]["per_class_acc"] = [90.0] * 7 + [10.0] * 3
    drawn = {}

    def capture(fig, path):
        drawn[path.name] = [[(list(ln.get_xdata()), list(ln.get_ydata()), ln.get_label()) for ln in ax.get_lines()]
                            for ax in fig.axes]  # fmt: skip
        return path

    monkeypatch.setattr(AR, "_save", capture)
    paths = A.figures(recs, tmp_path)
    assert [p.name for p in paths] == ["ablation-axes.png", "ablation-delta.png", "ablation-loss-variation.png",
                                       "ablation-length.png"]  # fmt: skip
    curve, star = drawn["ablation-axes.png"][0][:2]
    assert curve[1] == pytest.approx(
        [35.0, 20.0, 30.0, 40.0]
    )  # val. balanced error at Δε = 0.25 … 2
    assert star[0] == [1] and star[1] == pytest.approx([20.0])  # Δε = 0.5, the second value
    delta = drawn["ablation-delta.png"][0]
    for k in range(10):  # mean of the two seeds at the selected point: 0.2·k + e
        assert delta[k][0] == [1, 2] and delta[k][1] == pytest.approx([0.2 * k, 0.2 * k + 1.0])
    lines = {lab: y for _, y, lab in drawn["ablation-loss-variation.png"][0]}
    (lpl,) = [y for lab, y in lines.items() if lab.startswith("LPL")]
    assert lpl == pytest.approx([20.0] * 10)  # (0.1 + 0.3) / 2 → 20 %
    ax = drawn["ablation-length.png"][0]
    ys = [y for _, y, _ in ax if len(y) == 2]
    # CE: 12 epochs (one seed), 48 epochs (35, 39)
    assert ys and ys[0] == pytest.approx([40.0, 37.0])
    # report() writes the tables, and the figures unless told not to
    drawn.clear()
    assert AR.report(recs, tmp_path / "r", figs=False) == tmp_path / "r" / "ablation-tables.md"
    assert drawn == {} and (tmp_path / "r" / "ablation-tables.md").is_file()
    AR.report(recs, tmp_path / "r")
    assert sorted(drawn) == sorted(p.name for p in paths)


def test_saved_figures_carry_no_matplotlib_version(tmp_path):
    """The ablation's PNGs in figures/ are written like every other figure: no PNG "Software" text (the
    matplotlib version), so a rerun with the same records writes the same bytes."""
    from PIL import Image

    from lpl_train.plotting import new_figure

    fig, axes = new_figure(1, (2, 2))
    axes[0, 0].plot([0, 1], [1, 0])
    path = AR._save(fig, tmp_path / "ablation-axes.png")
    assert b"matplotlib" not in path.read_bytes().lower()
    with Image.open(path) as im:
        assert "Software" not in im.info


# ---------------------------------------------------------------------- tables from hand-made records
def _main_rec(method, point, seed, val_acc, err, acc=None, ratio=None, lv=None, epochs=12):
    r = _study_rec("lpl_ablation", method, point, seed, val_acc, err, lv=lv)
    r["wall_s"] = 30.0
    if acc is not None:
        r["test"]["per_class_acc"] = acc
    if ratio is not None:
        r["delta_norm"] = [
            {"ratio": [ratio(e, k) for k in range(10)], "norm": [2 * ratio(e, k) for k in range(10)],
             "bound": [1.0] * 10, "n": [1] * 10}
            for e in range(epochs)
        ]  # fmt: skip
    return r


def test_tables_from_hand_made_records_of_the_main_study():
    """The final table (mean ± sample std over seeds, groups by rank: many = 3 most frequent, few = 3
    rarest), the validation curve with its edge flag and validation std, the seed-noise comparisons (none
    with a one-seed method) and the mechanism row at the selected point; the losing grid point's better
    test error never shows."""
    acc0 = [90.0, 90, 90, 80, 80, 80, 80, 10, 20, 30]  # errors: many 10, medium 20, few 80
    acc1 = [94.0, 94, 94, 70, 70, 70, 70, 30, 40, 50]  # errors: many 6, medium 30, few 60
    sel = {"delta_epsilon": 0.5}
    recs = [
        _main_rec(
            "la_lpl", sel, 0, 80.0, 30.0, acc0, ratio=lambda e, k: 0.1 * k + 0.01 * e, lv=0.1
        ),
        _main_rec(
            "la_lpl", sel, 1, 75.0, 34.0, acc1, ratio=lambda e, k: 0.1 * k + 0.01 * e + 0.1, lv=0.3
        ),
        _main_rec("la_lpl", {"delta_epsilon": 1.0}, 0, 70.0, 1.0, ratio=lambda e, k: 5.0, lv=9.0),
        _main_rec("la", {"tau": 1.0}, 0, 60.0, 40.0),
        _main_rec("la", {"tau": 1.0}, 1, 60.0, 44.0),
        _main_rec("ce", {}, 0, 50.0, 50.0),
    ]
    lines = A.tables(recs).splitlines()
    assert any("6 runs, 3.0 run-minutes" in x for x in lines)
    # validation errors 20 (seed 0) and 25 (seed 1) at the selected point: sample std 3.54
    assert (
        "| LA + LPL (paper reading) | delta_epsilon | **0.5: 20.00** · 1.0: 30.00 | EDGE | 3.54 (n=2) |"
        in lines
    )
    assert (
        "| LA + LPL (paper reading) | 32.00 ± 2.83 | 8.00 ± 2.83 | 25.00 ± 7.07 | 70.00 ± 14.14 | delta_epsilon=0.5 | 2 |"
        in lines
    )
    assert (
        "| LA | 42.00 ± 2.83 | 42.00 ± 2.83 | 42.00 ± 2.83 | 42.00 ± 2.83 | tau=1.0 | 2 |" in lines
    )
    assert "| CE | 50.00 | 50.00 | 50.00 | 50.00 | – | 1 |" in lines
    assert ("- LA + LPL (paper reading) vs LA (overall): 32.00 ± 2.83 vs 42.00 ± 2.83: lower by 10.00 (> 4.00)"
            in lines)  # fmt: skip
    assert not [x for x in lines if x.startswith("- ") and "vs CE" in x]  # CE has one seed
    # ‖δ‖/ε: many (classes 0-2) and few (7-9) of both seeds at the selected point, epochs 1 and 12
    assert (
        "| LA + LPL (paper reading) | 0.15 | 0.26 | 0.85 | 0.96 | 1.920 | +20.0 | +20.0 | 32.00 ± 2.83 |"
        in lines
    )
    assert "No records of the training-length studies." in lines


def test_length_delta_rows_select_on_the_select_seed_and_count_runs_with_delta_records():
    st = {
        "epochs": 2,
        "datasets": {"fmnist_lt10": {}},
        "methods": [{"id": "m"}, {"id": "ce"}],
        "select_seed": 0,
    }
    a, b = {"delta_epsilon": 1.0}, {"delta_epsilon": 3.0}

    def rec(method, point, seed, val_acc, ratio):
        r = _study_rec("lpl_ablation_lt10_search", method, point, seed, val_acc, 0.0, ratio=ratio)
        return dict(r, dataset="fmnist_lt10")

    rs = [
        rec("m", a, 0, 80.0, lambda e, k: 0.2),
        rec("m", a, 1, 10.0, lambda e, k: 0.4),
        rec("m", a, 2, 10.0, None),  # no δ record: not counted
        rec("m", b, 0, 70.0, lambda e, k: 9.0),
        rec("m", b, 1, 99.0, lambda e, k: 9.0),  # best validation, but not a selection run
        rec("ce", {}, 0, 50.0, None),
    ]
    studies = {"lpl_ablation_lt10_search": (st, rs)}
    out = AR._length_delta_lines(studies, ["lpl_ablation_lt10_search"], {"m": "M"})
    rows = [x for x in out if x.startswith("| `")]
    assert rows == [
        "| `ablation_lt10_search.toml` (2 epochs) | M | 0.30 | 0.30 | 0.30 | 0.30 | 2 |"
    ]
    assert (
        AR._length_delta_lines(
            {"lpl_ablation_lt10_search": (st, rs[-1:])}, ["lpl_ablation_lt10_search"], {}
        )
        == []
    )


def test_delta_recorder_of_a_preset_without_a_bound_records_the_norm_only():
    """The balanced presets have no ε_c (neither Eq. 33 nor the long-tail schedule): ‖δ_c‖ is recorded,
    bound and ratio are None (no bound is made up for them, and a 0 would read as a bound of zero)."""
    loss = build_loss("lpl", num_classes=6, preset="authors_balanced_fixed", alpha=0.05, steps=4)
    rec = A.attach_delta_recorder(loss, _Loader())
    u, y = _batch(3)
    loss(u.requires_grad_(), y)
    ep = rec.close()[0]
    norms = loss.last_delta.norm(dim=1)  # per sample here: the step's largest in each class
    assert ep["norm"] == pytest.approx([float(norms[y == c].max()) for c in range(6)], rel=1e-6)
    assert ep["n"] == [1] * 6 and ep["bound"] == [None] * 6 and ep["ratio"] == [None] * 6


def test_loss_variation_figure_order_legend_error_and_length_error_bars_by_hand(
    tmp_path, monkeypatch
):
    """ablation-loss-variation: class k at x = k (0 = head), the mean over seeds of the selected point (seed 0
    gives (k+1)%, seed 1 3(k+1)%, so 2(k+1)%), and the legend quotes the overall test error (30 and 34:
    32.0%), not the few classes' (50%). ablation-length: CE's 48-epoch error bar is the overall error's std
    over seeds (35 and 39: √8), not the few classes' (0)."""
    import numpy as np

    drawn = {}
    monkeypatch.setattr(AR, "_save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    recs = [
        _study_rec(
            "lpl_ablation",
            "lpl_norm",
            {"delta_epsilon": 0.5},
            0,
            80.0,
            30.0,
            ratio=lambda e, k: 0.1,
        ),
        _study_rec(
            "lpl_ablation",
            "lpl_norm",
            {"delta_epsilon": 0.5},
            1,
            10.0,
            34.0,
            ratio=lambda e, k: 0.1,
        ),
        _study_rec("lpl_ablation", "lpl_norm", {"delta_epsilon": 1.0}, 0, 70.0, 1.0),
        _study_rec("lpl_ablation", "ce", {}, 0, 50.0, 40.0),
        _study_rec("lpl_ablation_e48", "ce", {}, 0, 50.0, 35.0),
        _study_rec("lpl_ablation_e48", "ce", {}, 1, 50.0, 39.0),
    ]
    for seed, r in enumerate(recs[:2]):
        r["loss_variation"] = [
            {"relative_variation": [0.01 * (2 * seed + 1) * (k + 1) for k in range(10)]}
        ]
        r["test"]["per_class_acc"] = [50.0] * 10
    for r in recs[-2:]:
        r["test"]["per_class_acc"] = [90.0] * 7 + [10.0] * 3
    A.figures(recs, tmp_path)
    ax = drawn["ablation-loss-variation.png"].axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("LPL")]
    assert list(line.get_xdata()) == list(range(10))
    assert list(line.get_ydata()) == pytest.approx([2.0 * (k + 1) for k in range(10)])
    assert line.get_label().endswith("(32.0% err.)")
    ax = drawn["ablation-length.png"].axes[0]
    (ce,) = [c for c in ax.containers if list(c[0].get_ydata()) == pytest.approx([40.0, 37.0])]
    half = {round(float(s[0][0])): (s[1][1] - s[0][1]) / 2 for s in ce[2][0].get_segments()
            if len(s) == 2 and np.all(np.isfinite(s))}  # fmt: skip
    assert half[1] == pytest.approx(math.sqrt(8.0))
