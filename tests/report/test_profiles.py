"""Layer profiles: rows at relative depth from by_layer, `run --layers all` draws them, `compare --by_layer`
overlays models of different depth."""

import csv
import json
from pathlib import Path

import pytest

import matrixeval
from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.report.compare import layer_profiles
from matrixeval.report.plots import metric_axis_label, step_scale
from tests.tiny_models import make_tiny_causal_lm


def _result(name: str, depth: int, entropies: dict[int, float]) -> dict:
    by_layer = {str(layer): {"matrix_entropy": e, "matrix_entropy_stderr": 0.01,
                             "matrix_entropy_ci95": [e - 0.02, e + 0.02], "matrix_entropy_b": e / 2,
                             "n_samples": 10} for layer, e in entropies.items()}
    return {"results": {"wiki": {"matrix_entropy": entropies[depth], "loss": 3.0, "by_layer": by_layer}},
            "config": {"model_name": f"org__{name}", "n_params": 1000 * depth, "num_layers": depth},
            "higher_is_better": {"matrix_entropy": False, "loss": False}}


def test_rows_sit_at_relative_depth_with_their_interval():
    rows = layer_profiles([_result("deep", 12, {0: 0.9, 6: 0.7, 12: 0.5}), _result("flat", 6, {0: 0.8, 3: 0.6, 6: 0.4})])
    got = {(r["model"], r["layer"]): (r["relative_depth"], r["matrix_entropy"], r["matrix_entropy_lo"]) for r in rows}
    assert got[("org__deep", 6)] == (0.5, 0.7, pytest.approx(0.68))
    assert got[("org__flat", 3)] == (0.5, 0.6, pytest.approx(0.58))
    assert got[("org__flat", 6)][0] == 1.0
    assert "matrix_entropy_b" not in rows[0]  # no per-sample spread, not a profile metric
    with pytest.raises(MatrixEvalError, match="num_layers"):
        layer_profiles([{"results": {}, "config": {"model_name": "x"}}])


def test_compare_by_layer_writes_csv_and_png(tmp_path, capsys):
    files = []
    for name, depth, values in (("deep", 12, {0: 0.9, 6: 0.7, 12: 0.5}), ("flat", 6, {0: 0.8, 3: 0.6, 6: 0.4})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_result(name, depth, values)))
        files.append(str(path))
    assert main(["compare", *files, "--by_layer", "--output", str(tmp_path / "cmp")]) == 0
    with open(tmp_path / "cmp_by_layer.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["relative_depth"]) for r in rows][:3] == [("org__deep", "0.0"), ("org__deep", "0.5"),
                                                                    ("org__deep", "1.0")]
    assert (tmp_path / "cmp_by_layer.png").stat().st_size > 10_000
    with pytest.raises(MatrixEvalError, match="per-layer"):
        matrixeval_compare(files, metrics="loss")


def matrixeval_compare(files, **kw):
    from matrixeval.experiments.compare import compare

    return compare(files, by_layer=True, **kw)


def test_run_with_all_layers_draws_the_layer_profiles(tiny_root, tiny_corpus, tmp_path):
    model = make_tiny_causal_lm(tiny_root, "gpt2")
    out = matrixeval.evaluate(f"pretrained={model}", str(tiny_corpus), layers="all",
                              metrics="matrix_entropy,effective_rank,loss", output_path=tmp_path)
    png = Path(out["layers_plot"])
    assert png.name == Path(out["results_path"]).name.replace(".json", "_layers.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    one = matrixeval.evaluate(f"pretrained={model}", str(tiny_corpus), output_path=tmp_path / "one")
    assert "layers_plot" not in one  # one layer is no profile


def test_labels_take_the_direction_given_and_steps_spanning_decades_get_symlog():
    assert metric_axis_label("effective_rank", False) == "effective_rank ↓ (lower is better)"
    assert metric_axis_label("diff_erank", True) == "diff_erank ↑ (higher is better)"
    assert metric_axis_label("x", None) == "x"
    assert step_scale([0, 1000, 2000, 143000]) == ("symlog", 1000.0)
    assert step_scale([0, 20, 40, 60]) == ("linear", None)


def test_the_layer_profile_plot_carries_the_runs_caveats(tiny_root, tiny_corpus, tmp_path, monkeypatch):
    """issue 18: caveats travel to the plot too. 20 texts trigger few_samples; the figure gets that line."""
    from matplotlib.figure import Figure

    titles = []
    real = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, **kw: (titles.append(text), real(self, text, **kw))[1])
    model = make_tiny_causal_lm(tiny_root, "gpt2")
    out = matrixeval.evaluate(f"pretrained={model}", str(tiny_corpus), layers="all", metrics="matrix_entropy",
                              output_path=tmp_path)
    codes = [w["code"] for w in out["results"][next(iter(out["results"]))]["warnings"]]
    assert "few_samples" in codes
    assert any("[few_samples]" in t and "layer profiles" in t for t in titles), titles
    titles.clear()
    many = matrixeval.evaluate(f"pretrained={model}", str(tiny_corpus), layers="all", metrics="matrix_entropy",
                               output_path=tmp_path / "quiet", caveats=["min_samples=1", "min_entropy_ceiling=0",
                                                                        "max_truncated_fraction=1"])
    assert not any(w for e in many["results"].values() for w in e["warnings"])
    assert titles and not any("⚠" in t for t in titles)
