"""Reports from results files: scaling fits, comparison tables, rankings, correlations, plots.

Reads the numbers in results JSON files; never recomputes a metric from hidden states. matplotlib is
imported only when a plot is drawn.
"""

import importlib

# Where each public name lives. Imported on first use: a plain `matrixeval run` prints a table with
# `report.tables` and should not pay for scipy, which `fit` needs (~1 s of a short run's start-up).
_HOME = {
    "compare_table": "compare", "correlations": "compare", "fit_scaling": "compare", "fit_table": "compare",
    "load_results": "compare", "model_name": "compare", "rank_models": "compare", "series_by_model": "compare",
    "PowerLawFit": "fit", "fit_power_law": "fit", "predict": "fit",
    "plot_bars": "plots", "plot_scaling": "plots", "plot_series": "plots",
    "to_markdown": "tables", "write_csv": "tables",
}

__all__ = [
    "PowerLawFit",
    "compare_table",
    "correlations",
    "fit_power_law",
    "fit_scaling",
    "fit_table",
    "load_results",
    "model_name",
    "plot_bars",
    "plot_scaling",
    "plot_series",
    "predict",
    "rank_models",
    "series_by_model",
    "to_markdown",
    "write_csv",
]


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"matrixeval.report.{_HOME[name]}"), name)
    raise AttributeError(f"module 'matrixeval.report' has no attribute {name!r}")
