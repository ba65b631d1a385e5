"""Reports from results files: scaling fits, comparison tables, rankings, correlations, plots.

Reads the numbers in results JSON files; never recomputes a metric from hidden states. matplotlib is
imported only when a plot is drawn.
"""

from matrixeval.report.compare import (
    compare_table,
    correlations,
    fit_scaling,
    fit_table,
    load_results,
    model_name,
    rank_models,
    series_by_model,
)
from matrixeval.report.fit import PowerLawFit, fit_power_law, predict
from matrixeval.report.plots import plot_bars, plot_scaling, plot_series
from matrixeval.report.tables import to_markdown, write_csv

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
