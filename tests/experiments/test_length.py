"""length: every document is cut to exactly L tokens, and the same documents enter every length."""

import json

import pytest
from transformers import AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.length import cut_to_tokens, length_experiment
from matrixeval.models import default_model_path
from tests.tiny_models import make_tiny_bert

from .conftest import check_outputs, samples

COLUMNS = ["task", "length", "n_docs", "n_samples", "matrix_entropy", "matrix_entropy_stderr", "loss"]


def test_every_length_holds_exactly_that_many_tokens(llama_path, tiny_corpus, tmp_path):
    out = length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="8,16,32",
                            metrics="matrix_entropy,loss", output_path=tmp_path, log_samples=True)
    check_outputs(out, COLUMNS)
    assert [r["length"] for r in out["table"]] == [8, 16, 32]
    counts = out["documents"]["tiny"]
    assert counts["n_used"] == counts["n_long_enough"] - counts["n_inexact"] > 0
    texts = [json.loads(line)["text"] for line in open(tiny_corpus)]
    tok = AutoTokenizer.from_pretrained(llama_path)
    expected_ids = [i for i, t in enumerate(texts) if len(tok(t)["input_ids"]) >= 32]
    ids = None
    for length in (8, 16, 32):
        records = samples(out, f"tiny/len{length}")
        ids = ids or [r["doc_id"] for r in records]
        assert [r["doc_id"] for r in records] == ids == expected_ids  # the same documents at every length
        for r in records:
            layer = r["layers"]["3"]
            assert r["n_input_tokens"] == length and layer["n_tokens"] + layer["n_dropped"] == length
            assert not r["truncated"]


@pytest.mark.parametrize("which", ["gpt2", "bert", "minilm"])
def test_cut_re_encodes_to_exactly_the_length(which, gpt2_path, tiny_root):
    path = {"gpt2": gpt2_path, "bert": make_tiny_bert(tiny_root), "minilm": default_model_path()}[which]
    tok = AutoTokenizer.from_pretrained(path)
    text = "The cat sat on the mat and looked at the dog. A dog ran across the green field to find a stick!"
    for length in range(3, len(tok(text)["input_ids"]) + 1):
        cut = cut_to_tokens(tok, text, length)
        assert cut is not None and text.startswith(cut)
        assert len(tok(cut)["input_ids"]) == length
    assert cut_to_tokens(tok, text, len(tok(text)["input_ids"]) + 1) is None


def test_cli_on_minilm_and_clear_errors(tmp_path, capsys):
    assert main(["experiment", "length", "--lengths", "16,32", "--limit", "3", "--output_path", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| task" in printed and "pydoc_topics" in printed
    result = next(tmp_path.rglob("length_*.json"))
    data = json.loads(result.read_text())
    assert set(data["results"]) == {"pydoc_topics/len16", "pydoc_topics/len32"}
    assert data["documents"]["pydoc_topics"]["n_used"] == 3
    assert result.with_suffix(".png").exists()
    with pytest.raises(MatrixEvalError, match="exceeds max_length"):
        length_experiment(None, None, lengths="16,4096", output_path=None)
