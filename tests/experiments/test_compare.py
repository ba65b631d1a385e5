"""compare: power-law fits recover known parameters; tables, ranking, correlations and plot are written."""

import csv
import json
import os
import subprocess
import sys

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
        assert next(csv.reader(f)) == ["metric", "task", "L0", "L0_stderr", "k", "k_stderr", "alpha", "alpha_stderr",
                                       "r2", "n", "note"]
    with open(f"{stem}_rank.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["model"] == "org__m6" and rows[0]["rank"] == "1.0"  # the largest model has the lowest entropy
    with open(f"{stem}_correlations.csv") as f:
        corr = {(r["metric"], r["task"]): r for r in csv.DictReader(f)}
    assert set(corr) == {("matrix_entropy", "piqa"), ("loss", "piqa")}  # only where accuracy is present
    assert float(corr[("matrix_entropy", "piqa")]["spearman"]) < -0.9
    body = json.loads((stem.parent / "cmp.json").read_text())
    assert set(body) == {"table", "fits", "ranking", "correlations", "config", "notes", "bootstrap"}


def test_no_accuracy_no_correlations(tmp_path):
    out = compare(_files(tmp_path, SIZES[:4], with_accuracy=False), rank="loss")
    assert out["correlations"] == [] and out["fits"] == [] and out["outputs"] == {}
    assert [r["model"] for r in out["ranking"]][0] == "org__m3"


def _cli(*argv, cwd):
    """`python -m matrixeval compare ...` as a user types it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "matrixeval", "compare", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_the_same_file_twice(tmp_path):
    files = _files(tmp_path, SIZES[:4])
    proc = _cli(*files, tmp_path / "." / files[0].name, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "given twice" in proc.stderr and files[0].name in proc.stderr


def test_cli_plot_into_a_folder_gets_the_stem_name(tmp_path):
    files = _files(tmp_path, SIZES)
    (tmp_path / "plots").mkdir()
    proc = _cli(*files, "--metrics", "matrix_entropy", "--plot", "plots", "--output", "out/cmp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plots" / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plots.png").exists()
    new = tmp_path / "new"  # a folder not there yet, named with a trailing slash
    assert main(["compare", *map(str, files), "--metrics", "matrix_entropy", "--plot", f"{new}/",
                 "--output", str(tmp_path / "out" / "cmp2")]) == 0
    assert (new / "cmp2.png").is_file() and not (tmp_path / "new.png").exists()


def test_cli_fit_that_means_nothing_says_so_with_standard_errors(tmp_path):
    noise = [0.5, 0.52, 0.49, 0.51, 0.5, 0.53, 0.48]  # no trend with size: a least-squares optimum, R² near 0
    paths = []
    for i, (n, y) in enumerate(zip(SIZES, noise)):
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(_result(f"m{i}", n, y)))
        paths.append(path)
    proc = _cli(*paths, "--fit", "powerlaw", "--metrics", "matrix_entropy", "--plot", tmp_path / "fit.png",
                "--output", tmp_path / "cmp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "cmp_fit.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert "poor fit" in row["note"]
    assert all(float(row[f"{p}_stderr"]) >= 0 for p in ("L0", "k", "alpha"))
    assert float(row["alpha_stderr"]) > abs(float(row["alpha"])) and "alpha not determined" in row["note"]
    assert "poor fit" in proc.stdout


def _two_task_files(tmp_path):
    """Three models, two tasks; a beats b on the average of the values but b wins more tasks."""
    values = {"a": {"t1": 0.10, "t2": 0.50}, "b": {"t1": 0.30, "t2": 0.40}, "c": {"t1": 0.35, "t2": 0.45}}
    paths = []
    for i, (name, tasks) in enumerate(values.items()):
        r = {"results": {t: {"nuclear_norm": v, "n_samples": 10} for t, v in tasks.items()},
             "config": {"model_name": name, "n_params": 10**(7 + i), "n_params_non_embedding": 10**(6 + i) * (3 - i)},
             "higher_is_better": {"nuclear_norm": True}}  # a stale direction from an older matrixeval
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(r))
        paths.append(path)
    return paths, values


def _main(*argv) -> int:
    return main(["compare", *map(str, argv)])


def test_cli_rank_by_mean_like_table_4_then_by_mean_rank_and_overridden(tmp_path, capsys):
    paths, values = _two_task_files(tmp_path)
    assert _main(*paths, "--rank", "nuclear_norm", "--output", tmp_path / "r") == 0
    assert "## Ranking by nuclear_norm (mean over the tasks every model has)" in capsys.readouterr().out
    with open(tmp_path / "r_rank.csv") as f:
        rows = list(csv.DictReader(f))
    # by hand: averages a 0.30, b 0.35, c 0.40; lower nuclear norm is better (the paper's evaluation)
    assert [r["model"] for r in rows] == ["a", "b", "c"]
    assert list(rows[0])[:5] == ["rank", "model", "average", "t1", "t2"]
    assert [float(r["average"]) for r in rows] == pytest.approx([0.30, 0.35, 0.40])
    assert float(rows[1]["t2"]) == values["b"]["t2"]
    assert _main(*paths, "--rank", "nuclear_norm", "--rank_by", "mean_rank", "--output", tmp_path / "r2") == 0
    with open(tmp_path / "r2_rank.csv") as f:
        rows = list(csv.DictReader(f))
    # ranks per task: t1 a1 b2 c3, t2 b1 c2 a3 -> mean ranks a 2, b 1.5, c 2.5
    assert [(r["model"], float(r["mean_rank"])) for r in rows] == [("b", 1.5), ("a", 2.0), ("c", 2.5)]
    assert _main(*paths, "--rank", "nuclear_norm", "--higher_is_better", "nuclear_norm=true", "--output",
                 tmp_path / "r3") == 0
    with open(tmp_path / "r3_rank.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["c", "b", "a"]
    capsys.readouterr()
    assert _main(*paths, "--rank", "nuclear_norm", "--higher_is_better", "nuclear_norm=maybe") == 2
    assert "METRIC=true|false" in capsys.readouterr().err


def test_cli_x_non_embedding_parameters(tmp_path):
    paths, _ = _two_task_files(tmp_path)
    assert _main(*paths, "--x", "n_params_non_embedding", "--output", tmp_path / "x") == 0
    with open(tmp_path / "x.csv") as f:
        rows = list(csv.DictReader(f))
    # ordered by the non-embedding count: a 3e6, b 2e7, c 1e8
    assert [(r["model"], int(r["n_params_non_embedding"])) for r in rows[::2]] == [("a", 3 * 10**6), ("b", 2 * 10**7),
                                                                                  ("c", 10**8)]
