"""compare: power-law fits recover known parameters; tables, ranking, correlations and plot are written."""

import csv
import json

import numpy as np
import pytest

from matrixeval.cli import main
from matrixeval.experiments.compare import compare

SIZES = [7.0e7, 1.6e8, 4.1e8, 1.0e9, 1.4e9, 2.8e9, 6.9e9]
L0, K, ALPHA = 0.35, 3.0, -0.12


def _result(name, n_params, entropy, accuracy=None, loss=None):
    entry = {"matrix_entropy": entropy, "matrix_entropy_stderr": 0.001, "n_samples": 100,
             "loss": loss if loss is not None else 10 * entropy, "by_layer": {}}
    tasks = {"wikitext": entry}
    if accuracy is not None:
        tasks["piqa"] = {"matrix_entropy": entropy + 0.01, "accuracy": accuracy, "n_samples": 50}
    return {"results": tasks, "config": {"model_name": f"org__{name}", "n_params": n_params},
            "higher_is_better": {"matrix_entropy": False, "loss": False, "accuracy": True}}


def _files(tmp_path, sizes, with_accuracy=True):
    paths = []
    for i, n in enumerate(sizes):
        entropy = L0 + K * n**ALPHA
        r = _result(f"m{i}", n, entropy, accuracy=0.5 + 0.03 * i + 0.01 * (i % 2) if with_accuracy else None)
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(r))
        paths.append(path)
    return paths[::-1]  # not in size order


def test_power_law_fit_recovers_the_parameters(tmp_path):
    out = compare(_files(tmp_path, SIZES), fit="powerlaw", metrics="matrix_entropy")
    fit = next(r for r in out["fits"] if r["task"] == "wikitext")
    assert fit["L0"] == pytest.approx(L0, rel=0.01)
    assert fit["k"] == pytest.approx(K, rel=0.01)
    assert fit["alpha"] == pytest.approx(ALPHA, rel=0.01)
    assert fit["r2"] > 0.9999 and fit["n"] == len(SIZES) and fit["note"] == ""
    assert [r["n_params"] for r in out["table"] if r["task"] == "wikitext"] == SIZES


def test_fewer_than_four_models_is_ill_posed(tmp_path):
    out = compare(_files(tmp_path, SIZES[:3]), fit="powerlaw", metrics="matrix_entropy")
    fit = next(r for r in out["fits"] if r["task"] == "wikitext")
    assert fit["n"] == 3 and "4" in fit["note"] and np.isnan(fit["L0"])


def test_cli_writes_every_table_the_plot_and_correlations(tmp_path, capsys):
    files = [str(p) for p in _files(tmp_path, SIZES)]
    stem = tmp_path / "report" / "cmp"
    argv = ["compare", *files, "--fit", "powerlaw", "--plot", str(tmp_path / "scaling.png"), "--rank",
            "matrix_entropy", "--task", "wikitext", "--output", str(stem)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for title in ("## Metrics", "## Power-law fits", "## Ranking by matrix_entropy", "## Correlation with accuracy"):
        assert title in printed
    data = (tmp_path / "scaling.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with open(f"{stem}.csv") as f:
        assert {"model", "n_params", "task", "matrix_entropy", "loss", "accuracy"} <= set(next(csv.reader(f)))
    with open(f"{stem}_fit.csv") as f:
        assert next(csv.reader(f)) == ["metric", "task", "L0", "k", "alpha", "r2", "n", "note"]
    with open(f"{stem}_rank.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["model"] == "org__m6" and rows[0]["rank"] == "1.0"  # the largest model has the lowest entropy
    with open(f"{stem}_correlations.csv") as f:
        corr = {(r["metric"], r["task"]): r for r in csv.DictReader(f)}
    assert set(corr) == {("matrix_entropy", "piqa"), ("loss", "piqa")}  # only where accuracy is present
    assert float(corr[("matrix_entropy", "piqa")]["spearman"]) < -0.9
    body = json.loads((stem.parent / "cmp.json").read_text())
    assert set(body) == {"table", "fits", "ranking", "correlations", "config"}


def test_no_accuracy_no_correlations(tmp_path):
    out = compare(_files(tmp_path, SIZES[:4], with_accuracy=False), rank="loss")
    assert out["correlations"] == [] and out["fits"] == [] and out["outputs"] == {}
    assert [r["model"] for r in out["ranking"]][0] == "org__m3"
