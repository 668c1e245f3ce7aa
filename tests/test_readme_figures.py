"""The README's Figures table names every file that `make figures` writes into figures/."""

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# committed inputs of `make figures`, not its outputs
INPUTS = {"ablation-runs.jsonl.gz"}


def _expand(name: str) -> list[str]:
    """``fig3.{png,pdf}`` -> ``fig3.png``, ``fig3.pdf`` (any number of brace groups)."""
    parts = re.split(r"\{([^}]*)\}", name)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def _listed() -> set[str]:
    section = README[README.index("## Figures") :]
    section = section[: section.index("\n## ", 1)]
    first_cells = [
        row.split("|")[1] for row in section.splitlines() if row.startswith("| `figures/")
    ]
    return {
        n
        for cell in first_cells
        for m in re.finditer(r"`figures/([^`]+)`", cell)
        for n in _expand(m.group(1))
    }


def test_every_generated_figure_file_is_in_the_readme_table():
    on_disk = {p.name for p in (ROOT / "figures").iterdir() if p.is_file()} - INPUTS
    assert sorted(on_disk - _listed()) == []


def test_the_readme_table_names_no_missing_file():
    assert sorted(n for n in _listed() if not (ROOT / "figures" / n).is_file()) == []
