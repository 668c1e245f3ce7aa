"""Summaries of finished runs: ``lpl-train report`` over run folders (:mod:`.runs`), a study's tables and
claims over its records (:mod:`.tables`), and what both share (:mod:`.stats`: mean ± std over distinct
seeds, the many/medium/few group rule, the seed-noise verdict)."""

from lpl_train.report.runs import (
    ReportRow,
    aggregate,
    collect_runs,
    load_paper_results,
    make_report,
    paper_cell,
    to_csv,
    to_markdown,
)
from lpl_train.report.stats import (
    DEFAULT_GROUPS,
    GroupRule,
    class_groups_by_rank,
    fmt_mean_std,
    mean_std,
    parse_groups,
    verdict,
)

__all__ = [
    "DEFAULT_GROUPS",
    "GroupRule",
    "ReportRow",
    "aggregate",
    "class_groups_by_rank",
    "collect_runs",
    "fmt_mean_std",
    "load_paper_results",
    "make_report",
    "mean_std",
    "paper_cell",
    "parse_groups",
    "to_csv",
    "to_markdown",
    "verdict",
]
