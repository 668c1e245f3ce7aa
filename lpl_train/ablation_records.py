"""The LPL long-tail ablation's run records: the study definitions it is made of (:data:`STUDIES`), the
training-length settings (:data:`LENGTH`), and collecting, adding and reading the records
(``figures/ablation-runs.jsonl.gz``). The command line is :mod:`lpl_train.ablation`."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpl_train.report.checks import read_file

# ------------------------------------------------------------------------------------------- records
STUDY_DIR = Path(__file__).resolve().parent / "configs" / "study"
#: The ablation's study definitions, by the ``study`` name their records carry.
STUDIES = {
    "lpl_ablation": "ablation.toml",
    "lpl_ablation_e48": "ablation_e48.toml",
    "lpl_ablation_full_e12": "ablation_full_e12.toml",
    "lpl_ablation_full_e12_lpl": "ablation_full_e12_lpl.toml",
    "lpl_ablation_q5": "ablation_q5.toml",
    "lpl_ablation_resnet_e60": "ablation_resnet_e60.toml",
    "lpl_ablation_lt10": "ablation_lt10.toml",
    "lpl_ablation_lt10_search": "ablation_lt10_search.toml",
}
#: The training-length comparison (and the other imbalance ratio): (study names, column title) next to the
#: main study's 12 epochs.
#: One column may join several studies of the same setting (the full-set baselines and the full-set LPL runs).
LENGTH = (
    (("lpl_ablation_e48",), "subsample, 48 epochs"),
    (("lpl_ablation_full_e12", "lpl_ablation_full_e12_lpl"), "full training set, 12 epochs"),
    (("lpl_ablation_resnet_e60",), "full training set, ResNet-8, 60 epochs"),
    (("lpl_ablation_lt10",), "10:1, subsample, 12 epochs, points of 100:1"),
    (("lpl_ablation_lt10_search",), "10:1, subsample, 12 epochs, searched at 10:1"),
)
#: The pairs compared in every training-length setting (beside each method against CE).
LENGTH_PAIRS = (
    ("la_lpl", "la"),
    ("lpl_norm", "lpl_varied"),
    ("lpl_norm", "la"),
    ("ldam_drw", "la"),
)
LPL_VARIANTS = ("lpl_fixed", "lpl_varied", "lpl_count", "lpl_diff", "lpl_norm", "lpl_authors", "la_lpl",
                "la_lpl_norm")  # fmt: skip


def _length_columns(
    studies: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]],
) -> tuple[list[tuple[str, dict[str, Any], dict]], list[dict[str, Any]], list[str]]:
    """The training-length columns present: (title, a study definition, joint summary); the methods (rows)
    in order of first appearance; the study names used."""
    from lpl_train.study import summarize

    cols, methods, names, ids = [], [], [], set()
    for group, title in LENGTH:
        present = [n for n in group if n in studies]
        if not present:
            continue
        joint: dict = {}
        for n in present:
            st, rs = studies[n]
            joint.update(summarize(rs, st))
            names.append(n)
            for m in st["methods"]:
                if m["id"] not in ids:
                    ids.add(m["id"])
                    methods.append(m)
        cols.append((title, studies[present[0]][0], joint))
    return cols, methods, names


def collect(run_roots: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every finished run record (``result.json``) under the study output folders ``run_roots``, sorted
    by (study, key). Unfinished runs (no ``result.json``) are left out. A run found twice (a folder given
    twice, or restored into a second one) is kept once if its records are the same, else ``ValueError``."""
    seen: dict[tuple[str, str], tuple[dict[str, Any], Path]] = {}
    for root in run_roots:
        root = Path(root)
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise FileNotFoundError(f"run folder {str(root)!r} {what}")
        for p in sorted((root / "runs").rglob("result.json")):
            r = read_file(p, json.loads, json.JSONDecodeError)
            missing = (
                [k for k in ("study", *RECORD_KEYS) if k not in r] if isinstance(r, dict) else []
            )
            if not isinstance(r, dict) or missing:
                raise ValueError(
                    f"run record {str(p)!r} is not a record written by lpl-train study "
                    f"({'it lacks ' + ', '.join(missing) if missing else 'not a JSON object'})"
                )
            first = seen.setdefault((r["study"], r["key"]), (r, p))
            if first[0] != r:
                raise ValueError(f"run {r['study']}/{r['key']} has two different records: "
                                 f"{str(first[1])!r} and {str(p)!r}")  # fmt: skip
    return sorted((r for r, _ in seen.values()), key=lambda r: (r["study"], r["key"]))


def add_records(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``old`` unchanged plus ``new``, sorted by (study, key) as :func:`collect` sorts. A run of ``new``
    already in ``old`` (same study and key) with the same record is skipped (a restored run, see
    ``--restore``); with a different record it raises ``ValueError``."""
    seen = {(r["study"], r["key"]): r for r in old}
    dup = sorted(f"{r['study']}/{r['key']}" for r in new
                 if (r["study"], r["key"]) in seen and seen[r["study"], r["key"]] != r)  # fmt: skip
    if dup:
        raise ValueError(
            f"runs already recorded with a different record: {dup[:5]}{' ...' if len(dup) > 5 else ''}"
        )
    fresh = [r for r in new if (r["study"], r["key"]) not in seen]
    return sorted([*old, *fresh], key=lambda r: (r["study"], r["key"]))


#: The committed records: gzip-compressed JSONL (5 MB as text, most of it per-epoch series).
RECORDS_FILE = "ablation-runs.jsonl.gz"


#: What every study record carries (:mod:`lpl_train.study_runs` writes them): a study's report indexes
#: its records by them, and the ablation's by their ``study`` too.
RECORD_KEYS = ("key", "dataset", "method", "seed", "point")


def parse_records(
    text: str, source: str | Path, required: Sequence[str] = RECORD_KEYS
) -> list[dict[str, Any]]:
    """The records of a JSONL text, one JSON object a line (blank lines skipped). A line that is not a
    JSON object, or a record without one of ``required``, is a ``ValueError`` naming ``source`` and the
    line: the reports would otherwise fail later on a bare key."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{str(source)!r} line {n} is not JSON ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(r, dict):
            raise ValueError(
                f"{str(source)!r} line {n}: a record is a JSON object, got {type(r).__name__}"
            )
        missing = [k for k in required if k not in r]
        if missing:
            raise ValueError(
                f"{str(source)!r} line {n}: record {r.get('key')!r} lacks {', '.join(missing)}: not a "
                "record written by lpl-train study"
            )
        out.append(r)
    return out


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of ``ablation-runs.jsonl.gz`` (or of a plain ``.jsonl`` file), checked by
    :func:`parse_records`."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"ablation records {str(p)!r} do not exist; run `make ablation` (or --collect) first"
        )
    raw = p.read_bytes()
    try:
        text = (gzip.decompress(raw) if p.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"ablation records {str(p)!r} cannot be read: {exc}") from None
    return parse_records(text, p, ("study", *RECORD_KEYS))


def write_records(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the records one JSON object a line (keys sorted), gzip-compressed for a ``.gz`` path with no
    timestamp in the header, so the same records give the same bytes. The file is replaced whole (a
    crash leaves the old records)."""
    from lpl_train._files import write_bytes_atomic

    p = Path(path)
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    return write_bytes_atomic(
        p, gzip.compress(data, compresslevel=9, mtime=0) if p.suffix == ".gz" else data
    )


def _studies(
    records: Sequence[dict[str, Any]],
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(study definition, records) per study name present in ``records``, in the order of :data:`STUDIES`."""
    from lpl_train.study import load_study

    out = {}
    for name, fname in STUDIES.items():
        recs = [r for r in records if r["study"] == name]
        if recs:
            out[name] = (load_study(STUDY_DIR / fname), recs)
    unknown = sorted({r["study"] for r in records} - set(STUDIES))
    if unknown:
        raise ValueError(f"records of unknown studies {unknown}; known: {sorted(STUDIES)}")
    return out


def _val(r: dict[str, Any]) -> float:
    from lpl_train.study import validation_score

    return validation_score(r)
