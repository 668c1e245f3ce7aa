"""Executed notebooks show their figures as images: notebook 02 is run here (nbclient, one CPU thread) and
every code cell tagged ``figure`` must produce an ``image/png`` output — a figure that renders as text (as
after a library call to ``matplotlib.use("Agg")``) fails."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST idx files not installed")
def test_notebook_02_figure_cells_output_images():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / "02-loss-variation.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    tagged = [
        i for i, c in enumerate(nb.cells) if "figure" in c.get("metadata", {}).get("tags", [])
    ]
    assert len(tagged) >= 3
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()
    for i in tagged:
        kinds = [set(o.get("data", {})) for o in nb.cells[i].outputs]
        assert any("image/png" in k for k in kinds), f"cell {i} shows no image: {kinds}"
