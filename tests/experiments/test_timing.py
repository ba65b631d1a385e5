"""timing: the three computations run on the same hidden states and agree where they should."""

import json

import pytest

from matrixeval.cli import main
from matrixeval.experiments.timing import timing_experiment

from .conftest import check_outputs

COLUMNS = ["task", "n_docs", "mean_tokens", "hidden_size", "reference_s", "matrix_entropy_s", "nuclear_norm_s",
           "reference_over_entropy", "reference_over_nuclear", "entropy_over_nuclear", "max_abs_diff"]


def test_reports_seconds_ratios_and_agreement(gpt2_path, tiny_corpus, tmp_path):
    out = timing_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), limit=6, repeats=2, output_path=tmp_path)
    check_outputs(out, COLUMNS)
    row = out["table"][0]
    assert row["n_docs"] == 6 and row["hidden_size"] == 32
    assert row["reference_over_entropy"] == pytest.approx(row["reference_s"] / row["matrix_entropy_s"])
    assert row["reference_over_nuclear"] == pytest.approx(row["reference_s"] / row["nuclear_norm_s"])
    assert row["max_abs_diff"] < 1e-4  # float32 SVD vs float64 eigensolver on the same tensors
    ours = timing_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), limit=6, output_path=None)["table"][0]
    assert ours["matrix_entropy"] == row["matrix_entropy"]  # the metric values do not depend on the timing


def test_cli_on_minilm(tmp_path, capsys):
    assert main(["experiment", "timing", "--limit", "3", "--output_path", str(tmp_path)]) == 0
    assert "reference_over_nuclear" in capsys.readouterr().out
    data = json.loads(next(tmp_path.rglob("timing_*.json")).read_text())
    assert data["results"]["pydoc_topics"]["hidden_size"] == 384
