"""Figures for reports: scaling with model size, a metric against a numeric x, grouped bars, and panels of
several metrics against one x (relative depth, training step) with 95% bands.

matplotlib is imported inside each function (``import matrixeval.report`` stays cheap) and figures are drawn
on an Agg canvas without pyplot, so no global backend is switched and nothing needs a display. Every function
writes the file at ``path`` (parent folders created; the format follows the suffix) and returns its Path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from matrixeval.engine.files import atomic_savefig
from matrixeval.errors import MatrixEvalError
from matrixeval.report.compare import compare_table, metric_direction
from matrixeval.report.fit import PowerLawFit, predict

__all__ = ["caveat_notes", "mark_caveats", "metric_axis_label", "plot_bars", "plot_layer_profiles", "plot_metric_panels", "plot_scaling", "plot_series", "step_scale"]

# One point of a line in plot_metric_panels: x, value, and the 95% interval (None where there is none).
Point = tuple[float, float, "float | None", "float | None"]


def plot_scaling(results: Sequence[dict], metric: str, x: str, fits: Mapping[str, PowerLawFit] | None,
                 path: str | Path, *, layer: int | None = None, title: str | None = None) -> Path:
    """Plot ``metric`` against ``config[x]`` (log x axis), one series per task, fitted power laws dashed.

    Points carry error bars when the results have ``<metric>_stderr``; each point of the first series is
    labelled with its model. ``fits`` maps task → :class:`PowerLawFit` (e.g. from
    :func:`matrixeval.report.compare.fit_scaling`); an ill-posed fit draws no curve and says why in the legend.
    """
    rows = [r for r in compare_table(results, x, layer) if _finite(r.get(metric))]
    if not rows:
        raise MatrixEvalError(f"no results have a finite {metric!r}; pick a metric the results contain")
    tasks = sorted({r["task"] for r in rows})
    fig, ax = _figure()
    handles = []  # legend order: each task's points, then its fit
    for i, task in enumerate(tasks):
        task_rows = [r for r in rows if r["task"] == task]
        xs = np.array([r[x] for r in task_rows], dtype=np.float64)
        ys = np.array([r[metric] for r in task_rows], dtype=np.float64)
        errs = [r.get(f"{metric}_stderr") for r in task_rows]
        yerr = np.array([e if _finite(e) else 0.0 for e in errs]) if any(_finite(e) for e in errs) else None
        color = f"C{i}"
        handles.append(ax.errorbar(xs, ys, yerr=yerr, fmt="o", color=color, capsize=3, label=task))
        if i == 0:
            for r, xv, yv in zip(task_rows, xs, ys):
                ax.annotate(_short(r["model"]), (xv, yv), textcoords="offset points", xytext=(4, 6), fontsize=7)
        fit = (fits or {}).get(task)
        if fit is None:
            continue
        if fit.ok:
            grid = np.geomspace(xs.min(), xs.max(), 200)
            sign = "+" if fit.k >= 0 else "-"
            formula = f"{tex_number(fit.L0)} {sign} {tex_number(abs(fit.k))}\\,x^{{{tex_number(fit.alpha)}}}"
            label = (f"{task} fit: ${formula}$ ($R^2$={fit.r2:.3f})" + (f"\n{_clip(fit.caution)}" if fit.caution else ""))
            handles += ax.plot(grid, predict(fit, grid), linestyle="--", color=color, label=label)
        else:
            label = f"{task} fit ill-posed: {_clip(fit.ill_posed)}"
            handles += ax.plot([], [], linestyle="--", color=color, label=label)
    ax.set_xscale("log")
    has_errors = any(_finite(r.get(f"{metric}_stderr")) for r in rows)
    ax.set_xlabel(("parameters (config.n_params)" if x == "n_params" else f"config.{x}")
                  + ("\nerror bars: ± 1 s.e. over samples" if has_errors else ""))
    ax.set_ylabel(metric + _direction(results, metric))
    default_title = f"{metric} vs {x}" + (f" (layer {layer})" if layer is not None else "")
    ax.set_title(title or default_title)
    ax.legend(handles=handles, fontsize=8)
    return _save(fig, path)


def plot_series(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, xlabel: str,
                ylabel: str, title: str, logx: bool = False, errors: Mapping[str, Sequence[float]] | None = None,
                xticks: Sequence[float] | None = None, counts: Mapping[str, Sequence[int]] | None = None,
                min_count: int | None = None, error_label: str | None = None,
                notes: Sequence[str] = ()) -> Path:
    """Plot one line with markers per series, ``{label: (xs, ys)}``, e.g. a metric against context length
    per model (:func:`matrixeval.report.compare.series_by_model` builds this from results).

    ``errors`` (``{label: yerr}``, same lengths) draws error bars, and ``error_label`` says on the figure what
    they are (e.g. "± 1 s.e."); ``xticks`` puts plain-number ticks at those x values only (e.g. the lengths 64,
    128, ... on a log axis). ``counts`` (``{label: [n, ...]}``) writes each point's n beside it; a point with
    fewer than ``min_count`` is drawn hollow and the legend says why. ``notes`` (caveats) are written in the
    figure."""
    if not series:
        raise MatrixEvalError("plot_series got no series; pass {label: (xs, ys)} with at least one entry")
    fig, ax = _figure()
    sparse_drawn = False
    for i, (label, (xs, ys)) in enumerate(series.items()):
        if len(xs) != len(ys):
            raise MatrixEvalError(f"series {label!r} has {len(xs)} x values and {len(ys)} y values; pass equal lengths")
        yerr = (errors or {}).get(label)
        if yerr is not None:
            yerr = [e if _finite(e) else 0.0 for e in yerr]
        color = f"C{i % 10}"
        ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=3, label=label, color=color)
        ns = (counts or {}).get(label)
        if ns is None:
            continue
        for xv, yv, n in zip(xs, ys, ns):
            if not _finite(yv):
                continue
            ax.annotate(f"n={n}", (xv, yv), textcoords="offset points", xytext=(5, -11), fontsize=7, color=color)
            if min_count is not None and n < min_count:
                ax.plot([xv], [yv], marker="o", markersize=11, markerfacecolor="white", markeredgecolor="darkred",
                        markeredgewidth=1.5, linestyle="none", zorder=3,
                        label=None if sparse_drawn else f"fewer than {min_count} samples")
                ax.plot([xv], [yv], marker="x", markersize=6, color="darkred", linestyle="none", zorder=4)
                sparse_drawn = True
    if logx:
        ax.set_xscale("log")
    if counts:
        ax.margins(x=0.08)  # room for the n= labels of the last points
    if xticks is not None:
        from matplotlib.ticker import NullLocator

        ax.set_xticks(list(xticks), [f"{t:g}" for t in xticks])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel + (f"\n{error_label}" if error_label else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    mark_caveats(ax, notes)
    return _save(fig, path)


def plot_bars(groups: Mapping[str, Mapping[str, float]], path: str | Path, *, ylabel: str, title: str,
              errors: Mapping[str, Mapping[str, float | tuple[float, float]]] | None = None,
              error_label: str | None = None, zero_line: bool = False, logy: bool = False,
              legend_inside: bool = False, lines: Mapping[str, tuple[float, str]] | None = None,
              notes: Sequence[str] = ()) -> Path:
    """Grouped bars: one group per key of ``groups`` (e.g. task or model), one bar per category inside it (e.g.
    sentence operation), a legend of categories and each bar's value on top.

    ``errors`` has the same shape and draws error bars: a number is a symmetric ± half-width, a ``(low, high)``
    pair an interval's bounds (e.g. a 95% interval; it need not be symmetric about the bar). ``error_label`` is
    written under the axes, to say what the bars and error bars are. ``zero_line`` draws y = 0 and signs the
    bar labels, for bars that are differences (Δ against a base). ``logy`` puts the values on a log axis (e.g.
    seconds that span decades), ``legend_inside`` keeps the legend inside the axes. ``lines`` (``{group: (y,
    label)}``) draws a dashed reference line across that group's bars, e.g. chance accuracy 1/n_choices.
    ``notes`` (caveats) are written in the figure."""
    if not groups:
        raise MatrixEvalError("plot_bars got no groups; pass {group: {category: value}} with at least one entry")
    categories = list(dict.fromkeys(c for values in groups.values() for c in values))
    names = list(groups)
    fig, ax = _figure(width=max(6.4, 1.2 * len(names) * max(1, len(categories)) / 2))
    width = 0.8 / len(categories)
    positions = np.arange(len(names))
    for j, category in enumerate(categories):
        heights = [groups[g].get(category, math.nan) for g in names]
        yerr = None
        if errors:
            spans = [_span(h, (errors.get(g) or {}).get(category)) for g, h in zip(names, heights)]
            yerr = np.array(spans, dtype=np.float64).T  # (2, n): distance below and above each bar
        bars = ax.bar(positions + (j - (len(categories) - 1) / 2) * width, heights, width, yerr=yerr, capsize=3,
                      label=category, color=f"C{j}")
        fmt = "{:+.3g}" if zero_line else "{:.4g}"
        below_above = yerr.T if yerr is not None else np.zeros((len(heights), 2))
        for bar, h, (below, above) in zip(bars, heights, below_above):
            if not _finite(h):
                continue
            up = h >= 0  # the label goes past the end of the bar and of its error bar, away from zero
            ax.annotate(fmt.format(h), (bar.get_x() + bar.get_width() / 2, h + above if up else h - below),
                        xytext=(0, 3 if up else -3), textcoords="offset points", ha="center",
                        va="bottom" if up else "top", fontsize=7)
    if zero_line:
        ax.axhline(0.0, color="black", linewidth=0.8)
    for k, name in enumerate(names):
        if name in (lines or {}):
            y, text = lines[name]
            ax.hlines(y, k - 0.45, k + 0.45, colors="black", linestyles="--", linewidth=1.2, zorder=3)
            ax.annotate(text, (k + 0.45, y), xytext=(2, 2), textcoords="offset points", ha="right", va="bottom",
                        fontsize=7)
    if logy:
        ax.set_yscale("log")
    ax.set_xticks(positions, [_short(n) for n in names], rotation=20 if len(names) > 4 else 0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if error_label:
        import textwrap

        ax.set_xlabel(textwrap.fill(error_label, 95), fontsize=7)
    if legend_inside:
        ax.legend(loc="best", fontsize=7, framealpha=0.9)
    else:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(categories), fontsize=8)
    mark_caveats(ax, notes)
    return _save(fig, path)


def caveat_notes(entries: Mapping[str, Mapping] | Sequence[Mapping], codes: Sequence[str] | None = None) -> list[str]:
    """One line per caveat (``"⚠ [code] message"``) of results entries (their ``warnings``), each once, for
    :func:`mark_caveats`; only the given `codes` when given."""
    items = entries.values() if isinstance(entries, Mapping) else entries
    out: dict[str, None] = {}
    for entry in items:
        for w in (entry or {}).get("warnings", []) if isinstance(entry, Mapping) else []:
            if codes is None or w["code"] in codes:
                out[f"⚠ [{w['code']}] {w['message']}"] = None
    return list(out)


def mark_caveats(ax, notes: Sequence[str]) -> None:
    """Write the caveats concerning a figure above its axes (dark red, framed; the layout makes room)."""
    if not notes:
        return
    import textwrap

    text = "\n".join(textwrap.fill(n, 110, subsequent_indent="   ") for n in notes)
    ax.figure.suptitle(text, fontsize=6.5, color="darkred", ha="left", x=0.01,
                       bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "darkred"})


def metric_axis_label(metric: str, higher_is_better: bool | None) -> str:
    """``"effective_rank ↓ (lower is better)"``; the direction comes from the caller (the results' registry)."""
    if higher_is_better is None:
        return metric
    return f"{metric} {'↑ (higher' if higher_is_better else '↓ (lower'} is better)"


def step_scale(steps: Sequence[float]) -> tuple[str, float | None]:
    """``("symlog", smallest positive step)`` when the steps span two decades or more (so step 0 still shows,
    on a linear stretch below the first positive step), else ``("linear", None)``."""
    positive = [s for s in steps if s > 0]
    if len(positive) >= 2 and max(positive) / min(positive) >= 100:
        return "symlog", float(min(positive))
    return "linear", None


def plot_metric_panels(panels: Mapping[str, Mapping[str, Sequence[Point]]], path: str | Path, *, xlabel: str,
                       title: str, higher_is_better: Mapping[str, bool] | None = None, xscale: str = "linear",
                       linthresh: float | None = None, notes: Sequence[str] = ()) -> Path:
    """One panel per metric (``{metric: {line label: [(x, y, lo, hi), ...]}}``), one line with markers per label
    and its 95% interval as a shaded band; the y label says which direction is better (``higher_is_better``).
    ``xscale`` "symlog" with ``linthresh`` (see :func:`step_scale`) shows a step 0 beside steps that span decades.
    Lines keep the same colour across panels; one legend below all panels. ``notes`` (caveats, see
    :func:`caveat_notes`) are written under the title."""
    panels = {m: lines for m, lines in panels.items() if any(_finite(p[1]) for pts in lines.values() for p in pts)}
    if not panels:
        raise MatrixEvalError("plot_metric_panels got no finite values; pass {metric: {label: [(x, y, lo, hi)]}}")
    labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    n = len(panels)
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * cols, 3.4 * rows + 0.6 + 0.2 * math.ceil(len(labels) / 3)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (metric, lines) in zip(axes, panels.items()):
        ax.grid(True, which="both", alpha=0.3)
        for label, points in lines.items():
            pts = sorted((p for p in points if _finite(p[1])), key=lambda p: p[0])
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] for p in pts], marker="o", markersize=3.5, color=colors[label], label=label)
            band = [(p[0], p[2], p[3]) for p in pts if _finite(p[2]) and _finite(p[3])]
            if len(band) >= 2:
                ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                                color=colors[label], alpha=0.2, linewidth=0, label="_band")
        if xscale == "symlog":
            ax.set_xscale("symlog", linthresh=linthresh or 1.0)
        elif xscale != "linear":
            ax.set_xscale(xscale)
        ax.set_ylabel(metric_axis_label(metric, (higher_is_better or {}).get(metric)), fontsize=9)
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_visible(False)
        elif i >= n - cols:  # the lowest panel of each column
            ax.set_xlabel(xlabel)
    if notes:
        import textwrap

        caveats = "\n".join(textwrap.fill(n, 60 * cols, subsequent_indent="   ") for n in notes)
        fig.suptitle(f"{title}\n{caveats}", fontsize=9)
    else:
        fig.suptitle(title)
    handles = {}
    for ax in axes[:n]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if any(c.get_label().startswith("_band") for ax in axes[:n] for c in ax.collections):
        from matplotlib.patches import Patch

        handles["shaded band: 95% interval"] = Patch(facecolor="grey", alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(handles)),
               fontsize=8, title=None)
    return _save(fig, path)


def plot_layer_profiles(rows: Sequence[Mapping], path: str | Path, *, metrics: Sequence[str],
                        higher_is_better: Mapping[str, bool] | None = None, title: str = "layer profiles",
                        notes: Sequence[str] = ()) -> Path:
    """Each metric against relative depth, from :func:`matrixeval.report.compare.layer_profiles` rows: one line
    per task (per model when several models are in the rows, "model / task" when both vary), 95% band; the
    caveats in ``notes`` under the title."""
    several_models = len({r["model"] for r in rows}) > 1
    several_tasks = len({r["task"] for r in rows}) > 1

    def label(r: Mapping) -> str:
        if several_models and several_tasks:
            return f"{_short(r['model'])} / {r['task']}"
        return _short(r["model"]) if several_models else r["task"]

    panels: dict[str, dict[str, list]] = {}
    for m in metrics:
        for r in rows:
            if m in r:
                panels.setdefault(m, {}).setdefault(label(r), []).append(
                    (r["relative_depth"], r[m], r.get(f"{m}_lo"), r.get(f"{m}_hi")))
    return plot_metric_panels(panels, path, xlabel="relative depth (layer / num_layers; 0 = embeddings)",
                              title=title, higher_is_better=higher_is_better, notes=notes)
def _span(height: float, error: float | tuple[float, float] | None) -> tuple[float, float]:
    """(below, above) distances of an error bar from the bar's top: ±error, or to an interval's bounds."""
    if error is None or not _finite(height):
        return 0.0, 0.0
    if isinstance(error, (tuple, list)):
        low, high = error
        if not (_finite(low) and _finite(high)):
            return 0.0, 0.0
        return max(height - low, 0.0), max(high - height, 0.0)
    return (error, error) if _finite(error) else (0.0, 0.0)


def _figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _save(fig, path: str | Path) -> Path:
    return atomic_savefig(fig, path, dpi=150)


def _direction(results: Sequence[dict], metric: str) -> str:
    try:
        higher = metric_direction(results, metric)
    except MatrixEvalError:  # no (or a disputed) direction: the label goes without one
        return ""
    return " (higher is better)" if higher else " (lower is better)"


def tex_number(value: float) -> str:
    """A number for a mathtext label: 3 significant digits, or ``m\\times10^{e}`` outside 1e-3..1e3
    (``1e-172`` → ``1.00\\times10^{-172}``), never a bare ``1e-172`` inside an exponent."""
    if value == 0 or 1e-3 <= abs(value) < 1e3:
        text = f"{value:.3g}"
        if "e" not in text:  # 999.7 rounds to 1e+03
            return text
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}\\times10^{{{int(exponent)}}}"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(model: str) -> str:
    """``EleutherAI__pythia-160m`` → ``pythia-160m``."""
    return model.split("__")[-1].split("/")[-1]


def _clip(text: str | None, limit: int = 60) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
