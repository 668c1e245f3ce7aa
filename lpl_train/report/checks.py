"""Shape checks of what ``report`` reads from a run folder: one-line errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["check_final", "check_paper", "read_file"]


def read_file(path: Path, parse: Any, error: type[Exception]) -> Any:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (error, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ValueError(
            f"file {str(path)!r} is not valid {kind}: {' '.join(str(exc).split())}"
        ) from None


def check_final(path: Path, final: Any) -> None:
    """``final.json`` must be an object whose ``final``/``best`` tables hold numbers (or null)."""
    where = f"result file {str(path)!r}"
    if not isinstance(final, dict):
        raise ValueError(f"{where} holds {type(final).__name__}, expected a JSON object")
    for table in ("final", "best"):
        sub = final.get(table, {})
        if not isinstance(sub, dict):
            raise ValueError(f"{where}: key {table!r} holds {sub!r}, expected an object")
        for k, v in sub.items():
            if isinstance(v, list | dict) or (v is not None and not isinstance(v, int | float)):
                if isinstance(v, list) and all(isinstance(x, int | float) or x is None for x in v):
                    continue  # per-class values
                raise ValueError(
                    f"{where}: key '{table}.{k}' has value {v!r}, expected a number or null"
                )
    seed = final.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{where}: key 'seed' has value {seed!r}, expected an integer")


def check_paper(path: Path, cfg: dict[str, Any]) -> None:
    """A config's optional ``[paper]`` table must name ``table``, ``row`` and ``column`` as strings."""
    paper = cfg.get("paper")
    if paper is None:
        return
    where = f"config file {str(path)!r}"
    if not isinstance(paper, dict):
        raise ValueError(f"{where}: key 'paper' has value {paper!r}, expected a table")
    for key in ("table", "row", "column"):
        if not isinstance(paper.get(key), str):
            got = "is missing" if key not in paper else f"has value {paper[key]!r}"
            raise ValueError(f"{where}: key 'paper.{key}' {got}, expected a string")
