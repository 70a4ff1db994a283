"""Reproducibility report: the paper's figures and tables from any folder of runs.

    python -m degradation.report PATH [--out DIR] [--margin PP]

    build_report(root, out=None, margin_pp=None)
        -> {"html", "markdown", "figures", "json", "pngs", "verdict", "unreadable"}

Modules: runs.py (find and load run folders, group them into variants), stats.py (mean ± std
and the verdict's tests), paper.py (published numbers), tables.py, figures.py, comparison.py,
progress.py and verdict.py (the verdict), provenance.py, document.py
(the report as blocks) with markdown.py and html.py (its two renderings), build.py (assembly).
"""

from degradation.report.build import build_report

__all__ = ["build_report"]
