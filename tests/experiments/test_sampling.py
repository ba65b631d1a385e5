"""sampling: subset values are exactly what the subset's own records give."""

import json
import math

import pytest

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.sampling import draw_subset, sampling_experiment

from .conftest import check_outputs, samples

COLUMNS = ["task", "size", "n_seeds", "matrix_entropy_mean", "matrix_entropy_std", "matrix_entropy_full",
           "loss_mean", "loss_std"]


def test_subset_values_equal_means_of_their_records(gpt2_path, tiny_corpus, tmp_path):
    out = sampling_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), sizes="5,10", n_seeds=4,
                              metrics="matrix_entropy,loss", seed=7, output_path=tmp_path, log_samples=True)
    check_outputs(out, COLUMNS)
    by_id = {r["doc_id"]: r for r in samples(out, "tiny")}
    hidden = out["config"]["hidden_size"]
    for size in (5, 10):
        subs = [s for s in out["subsets"]["tiny"] if s["size"] == size]
        assert len(subs) == 4 and all(len(s["doc_ids"]) == size for s in subs)
        assert len({tuple(s["doc_ids"]) for s in subs}) == 4  # different seeds, different subsets
        direct = []
        for s in subs:
            recs = [by_id[i] for i in s["doc_ids"]]
            ent = sum(r["layers"]["3"]["entropy"] for r in recs) / size / math.log(hidden)
            assert s["matrix_entropy"] == pytest.approx(ent, abs=1e-12)
            assert s["loss"] == pytest.approx(sum(r["loss"] for r in recs) / size, abs=1e-12)
            direct.append(ent)
        row = next(r for r in out["table"] if r["size"] == size)
        mean = sum(direct) / len(direct)
        std = math.sqrt(sum((d - mean) ** 2 for d in direct) / (len(direct) - 1))
        assert row["matrix_entropy_mean"] == pytest.approx(mean, abs=1e-12)
        assert row["matrix_entropy_std"] == pytest.approx(std, abs=1e-12)
        assert row["matrix_entropy_full"] == out["results"]["tiny"]["matrix_entropy"]
    assert [s["doc_ids"] for s in out["subsets"]["tiny"] if s["size"] == 5][0] == draw_subset(20, 5, 7, 0)


def test_cli_and_sizes_beyond_the_data(gpt2_path, tiny_corpus, tmp_path, capsys):
    argv = ["experiment", "sampling", "--model_args", f"pretrained={gpt2_path}", "--tasks", str(tiny_corpus),
            "--sizes", "3,6", "--n_seeds", "2", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    assert "matrix_entropy_std" in capsys.readouterr().out
    data = json.loads(next(tmp_path.rglob("sampling_*.json")).read_text())
    assert [r["size"] for r in data["table"]] == [3, 6]
    with pytest.raises(MatrixEvalError, match="exceeds the 20 documents"):
        sampling_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), sizes="50", output_path=None)
