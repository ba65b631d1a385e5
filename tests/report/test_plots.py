from pathlib import Path

import pytest

from matrixeval.errors import MatrixEvalError
from matrixeval.report.compare import fit_scaling, series_by_model
from matrixeval.report.fit import fit_power_law
from matrixeval.report.plots import plot_bars, plot_scaling, plot_series

from .conftest import make_result, task_entry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # axes, labels, points and a legend, not an empty canvas


def test_plot_scaling_with_fits(results, tmp_path):
    fits = fit_scaling(results, "matrix_entropy")
    assert fits["wikitext"].ok
    path = plot_scaling(results, "matrix_entropy", "n_params", fits, tmp_path / "plots" / "scaling.png")
    assert path == tmp_path / "plots" / "scaling.png"
    assert_png(path)


def test_plot_scaling_with_an_ill_posed_fit_and_no_fits(results, tmp_path):
    ill = {"wikitext": fit_power_law([1e7, 1e8, 1e9], [0.5, 0.45, 0.42])}
    assert_png(plot_scaling(results, "matrix_entropy", "n_params", ill, tmp_path / "ill.png", layer=6))
    assert_png(plot_scaling(results, "accuracy", "n_params", None, tmp_path / "plain.png", title="accuracy"))
    with pytest.raises(MatrixEvalError, match="'bleu'"):
        plot_scaling(results, "bleu", "n_params", None, tmp_path / "none.png")


def test_plot_series_against_length(tmp_path):
    runs = []
    for model, offset in (("EleutherAI__pythia-70m", 0.0), ("EleutherAI__pythia-160m", -0.05)):
        for length in (128, 256, 512, 1024):
            run = make_result(model, 1, {"wikitext": task_entry(0.7 + offset - 0.02 * length.bit_length())})
            run["config"]["max_length"] = length
            runs.append(run)
    series = series_by_model(runs, "matrix_entropy", "max_length", "wikitext")
    path = plot_series(series, tmp_path / "length.png", xlabel="max_length (tokens)", ylabel="matrix_entropy",
                       title="entropy vs length", logx=True)
    assert_png(path)
    with pytest.raises(MatrixEvalError, match="equal lengths"):
        plot_series({"m": ([1, 2], [1])}, tmp_path / "bad.png", xlabel="x", ylabel="y", title="t")


def test_plot_bars_for_sentence_operations(tmp_path):
    groups = {
        "EleutherAI__pythia-70m": {"base": 0.61, "shuffle": 0.64, "reverse_words": 0.65, "shuffle_reverse_words": 0.68},
        "EleutherAI__pythia-160m": {"base": 0.58, "shuffle": 0.60, "reverse_words": 0.62, "shuffle_reverse_words": 0.66},
    }
    errors = {m: {op: 0.004 for op in ops} for m, ops in groups.items()}
    path = plot_bars(groups, tmp_path / "ops.png", ylabel="matrix_entropy", title="sentence operations", errors=errors)
    assert_png(path)
    with pytest.raises(MatrixEvalError, match="no groups"):
        plot_bars({}, tmp_path / "empty.png", ylabel="y", title="t")


@pytest.mark.parametrize("value, text", [
    (0.35, "0.35"), (-0.12, "-0.12"), (3.0, "3"), (1234.5, "1.23\\times10^{3}"), (1e-172, "1.00\\times10^{-172}"),
    (-2.5e7, "-2.50\\times10^{7}"), (24.0, "24"), (0.0, "0"),
])
def test_legend_numbers_are_readable_mathtext(value, text):
    from matplotlib.mathtext import MathTextParser

    from matrixeval.report.plots import tex_number

    assert tex_number(value) == text
    MathTextParser("agg").parse(f"${text}$")  # renders without a mathtext error
def test_plot_bars_of_deltas_with_asymmetric_intervals(tmp_path):
    from matrixeval.report.plots import _span

    groups = {"dolly": {"shuffle": 0.002, "reverse_words": 0.042, "reverse_order": -0.01}}
    errors = {"dolly": {"shuffle": (0.0005, 0.004), "reverse_words": (0.037, 0.048), "reverse_order": (-0.015, -0.004)}}
    path = plot_bars(groups, tmp_path / "delta.png", ylabel="Δ matrix_entropy", title="Δ vs base", errors=errors,
                     error_label="Error bars: 95% bootstrap interval", zero_line=True)
    assert_png(path)
    # an interval (low, high) becomes the distances below and above the bar; a number is symmetric
    assert _span(0.042, (0.037, 0.048)) == pytest.approx((0.005, 0.006))
    assert _span(-0.01, (-0.015, -0.004)) == pytest.approx((0.005, 0.006))
    assert _span(0.5, 0.1) == (0.1, 0.1) and _span(0.5, None) == (0.0, 0.0) and _span(0.5, (None, 1.0)) == (0.0, 0.0)


def _drawn(monkeypatch):
    """Capture the figure a plot function saves, to read what it draws."""
    import matrixeval.report.plots as plots

    seen = {}
    real = plots.atomic_savefig

    def keep(fig, path, **kw):
        seen["fig"] = fig
        return real(fig, path, **kw)

    monkeypatch.setattr(plots, "atomic_savefig", keep)
    return seen


def _texts(fig):
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_title()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    for legend in fig.legends:
        out += [t.get_text() for t in legend.get_texts()]
    return out


def test_figures_say_what_their_bands_bars_and_caveats_are(tmp_path, monkeypatch):
    from matrixeval.report.plots import plot_metric_panels

    seen = _drawn(monkeypatch)
    pts = {"a": [(0, 0.5, 0.45, 0.55), (1, 0.7, 0.66, 0.74)]}
    plot_metric_panels({"matrix_entropy": pts}, tmp_path / "p.png", xlabel="depth", title="t")
    assert "shaded band: 95% interval" in _texts(seen["fig"])
    plot_series({"tiny": ([8, 16], [0.5, 0.6])}, tmp_path / "s.png", xlabel="L", ylabel="y", title="t",
                errors={"tiny": [0.01, 0.02]}, counts={"tiny": [40, 3]}, min_count=30,
                error_label="error bars: ± 1 s.e.", notes=["⚠ [few_samples_point] curve tiny"])
    texts = _texts(seen["fig"])
    assert "n=40" in texts and "n=3" in texts and "fewer than 30 samples" in texts
    assert any("error bars: ± 1 s.e." in t for t in texts) and "⚠ [few_samples_point] curve tiny" in texts
    plot_bars({"piqa": {"accuracy": 0.6}}, tmp_path / "b.png", ylabel="acc", title="t", lines={"piqa": (0.5, "chance 0.5")},
              logy=True, legend_inside=True)
    fig = seen["fig"]
    assert "chance 0.5" in _texts(fig) and fig.axes[0].get_yscale() == "log" and fig.axes[0].get_legend()
    assert not fig.legends  # the legend is inside the axes
