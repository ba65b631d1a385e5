"""timing: the three computations run on the same hidden states and agree where they should."""

import json

import pytest

import torch
from transformers import AutoModel, AutoTokenizer

from matrixeval.cli import main
from matrixeval.experiments.timing import timing_experiment
from tests.metrics import reference as ref

from .conftest import check_outputs, read_jsonl

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


END_TO_END = ["end_to_end_reference_entropy_s", "end_to_end_reference_nuclear_s", "end_to_end_matrixeval_s",
              "end_to_end_entropy_over_nuclear", "end_to_end_entropy_over_matrixeval",
              "end_to_end_nuclear_over_matrixeval", "end_to_end_max_abs_diff"]


def test_end_to_end_pipelines_agree_with_an_independent_forward(llama_path, tiny_corpus, tmp_path):
    out = timing_experiment(f"pretrained={llama_path}", str(tiny_corpus), limit=5, repeats=2, batch_size=2,
                            end_to_end=True, output_path=tmp_path)
    check_outputs(out, COLUMNS + END_TO_END)
    row = out["table"][0]
    assert all(row[c] > 0 for c in END_TO_END[:3])
    assert row["end_to_end_entropy_over_matrixeval"] == pytest.approx(
        row["end_to_end_reference_entropy_s"] / row["end_to_end_matrixeval_s"])
    assert row["end_to_end_nuclear_over_matrixeval"] == pytest.approx(
        row["end_to_end_reference_nuclear_s"] / row["end_to_end_matrixeval_s"])
    values = out["end_to_end_values"]["tiny"]
    assert values["doc_id"] == list(range(5))
    # each document's entropy, from a forward of its own and a float64 d×d eigensolve, written here
    tok = AutoTokenizer.from_pretrained(llama_path)
    model = AutoModel.from_pretrained(llama_path).eval()
    for text, ref_value, ours in zip([r["text"] for r in read_jsonl(tiny_corpus)], values["reference_entropy"],
                                     values["matrixeval_entropy"]):
        with torch.no_grad():
            hidden = model(torch.tensor([tok(text)["input_ids"]])).last_hidden_state[0]
        expected = ref.matrix_entropy(hidden)
        assert ours == pytest.approx(expected, abs=1e-6)
        assert ref_value == pytest.approx(expected, abs=1e-4)  # the reference's float32 SVD
    assert row["end_to_end_max_abs_diff"] < 1e-4
    assert not list(tmp_path.rglob("store"))  # the timed runs leave no store behind


def test_cli_on_minilm(tmp_path, capsys):
    assert main(["experiment", "timing", "--limit", "3", "--output_path", str(tmp_path)]) == 0
    assert "reference_over_nuclear" in capsys.readouterr().out
    data = json.loads(next(tmp_path.rglob("timing_*.json")).read_text())
    assert data["results"]["pydoc_topics"]["hidden_size"] == 384


def test_defaults_three_repeats_fastest_reported_threads_pinned(gpt2_path, tiny_corpus, tmp_path):
    before = torch.get_num_threads()
    out = timing_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), limit=4, threads=2, output_path=tmp_path,
                            caveat=["max_timing_spread=1000"])
    assert torch.get_num_threads() == before  # restored after the experiment
    assert out["config"]["repeats"] == 3 and out["config"]["threads"] == 2
    row, seconds = out["table"][0], out["repeat_seconds"]["tiny"]
    for method in ("reference", "matrix_entropy", "nuclear_norm"):
        assert len(seconds[method]) == 3
        assert row[f"{method}_s"] == min(seconds[method])
        fastest, slowest = min(seconds[method]), max(seconds[method])
        assert row[f"{method}_spread"] == pytest.approx((slowest - fastest) / fastest)
    assert out["results"]["tiny"]["warnings"] == []  # a threshold no spread reaches
    assert out["outputs"]["plots"]


def test_a_large_spread_between_repeats_is_warned(gpt2_path, tiny_corpus, tmp_path, monkeypatch, capsys):
    """One repeat of nuclear_norm is made slow for real (a sleep inside it): its spread is far above 20 %."""
    import time

    import matrixeval.experiments.timing as timing

    calls = {"n": 0}
    real = timing.matrix_nuclear_norm
    n_docs = 4

    def slow_second_pass(h):
        calls["n"] += 1
        if 2 * n_docs < calls["n"] <= 3 * n_docs:  # the warm-up pass, one repeat, then this one
            time.sleep(0.05)
        return real(h)

    monkeypatch.setattr(timing, "matrix_nuclear_norm", slow_second_pass)
    out = timing_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), limit=n_docs, output_path=tmp_path)
    seconds = out["repeat_seconds"]["tiny"]["nuclear_norm"]
    spread = (max(seconds) - min(seconds)) / min(seconds)
    assert max(seconds) > 0.2 and spread > 0.2
    found = [w for w in out["results"]["tiny"]["warnings"] if w["code"] == "timing_spread"]
    assert any(w["message"].startswith(f"nuclear_norm: repeats range {min(seconds):.3g}–{max(seconds):.3g} s, "
                                       f"spread {spread:.0%}") for w in found)
    assert "[timing_spread] nuclear_norm" in capsys.readouterr().err
    markdown = open(out["outputs"]["markdown"]).read()
    assert "`timing_spread`: nuclear_norm" in markdown


def test_token_controls_are_refused_before_any_model_loads(tiny_corpus):
    from matrixeval.errors import MatrixEvalError

    with pytest.raises(MatrixEvalError, match="--min_tokens and --fixed_tokens do not apply"):
        timing_experiment("pretrained=/nonexistent", str(tiny_corpus), fixed_tokens=8, output_path=None)
