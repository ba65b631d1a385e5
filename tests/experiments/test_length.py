"""length: every document is cut to exactly L tokens, and the same documents enter every length."""

import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.length import cut_to_tokens, length_experiment
from matrixeval.models import default_model_path
from tests.tiny_models import make_tiny_bert

from .conftest import check_outputs, samples

COLUMNS = ["task", "length", "n_docs", "n_samples", "matrix_entropy", "matrix_entropy_stderr", "loss"]


def test_every_length_holds_exactly_that_many_tokens(llama_path, tiny_corpus, tmp_path):
    out = length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="8,16,32", min_tokens=32,
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


def test_min_tokens_is_independent_of_the_largest_length(llama_path, tiny_corpus, tmp_path):
    """Lengths up to --min_tokens hold every document that long; a longer length only those that reach it."""
    out = length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="8,16,32", min_tokens=12,
                            metrics="matrix_entropy", output_path=tmp_path, log_samples=True)
    tok = AutoTokenizer.from_pretrained(llama_path)
    counts = [len(tok(json.loads(line)["text"])["input_ids"]) for line in open(tiny_corpus)]
    assert out["documents"]["tiny"]["n_inexact"] == 0  # so the counts below are plain token counts
    expected = {L: [i for i, n in enumerate(counts) if n >= max(L, 12)] for L in (8, 16, 32)}
    assert len(expected[8]) > len(expected[16]) > len(expected[32]) > 0  # the corpus exercises every case
    for row in out["table"]:
        L = row["length"]
        assert [r["doc_id"] for r in samples(out, f"tiny/len{L}")] == expected[L]
        assert row["n_docs"] == len(expected[L]) == out["documents"]["tiny"]["n_docs_by_length"][str(L)]
    assert out["documents"]["tiny"]["n_long_enough"] == sum(n >= 12 for n in counts)
    assert out["config"]["min_tokens"] == 12


def test_lengths_beyond_model_or_documents_are_dropped_and_said(llama_path, tiny_corpus, caplog):
    longest = max(len(AutoTokenizer.from_pretrained(llama_path)(json.loads(line)["text"])["input_ids"])
                  for line in open(tiny_corpus))
    limit = 64  # the tiny model's position limit
    assert longest + 1 <= limit
    out = length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths=f"8,{longest + 1},4096",
                            min_tokens=8, metrics="matrix_entropy", output_path=None)
    assert out["config"]["max_length"] == limit and [r["length"] for r in out["table"]] == [8]
    docs = out["documents"]["tiny"]
    assert docs["lengths_above_model_limit"] == [4096] and docs["lengths_beyond_documents"] == [longest + 1]
    assert f"lengths [4096] exceed max_length {limit}" in caplog.text
    assert f"reaches lengths [{longest + 1}]" in caplog.text
    with pytest.raises(MatrixEvalError, match=f"every length in \\[2048, 4096\\] exceeds max_length {limit}"):
        length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="2048,4096", output_path=None)
    with pytest.raises(MatrixEvalError, match="lower --min_tokens"):
        length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="8", min_tokens=10_000, output_path=None)


def test_cli_subprocess_defaults_run_on_the_default_model(tmp_path):
    """issue 13: `experiment length` asked 1024 tokens of the 512-position default model; now 1024 is dropped and
    said, and the default min_tokens 512 keeps the paragraphs that long."""
    argv = [sys.executable, "-m", "matrixeval", "experiment", "length", "--limit", "2", "--output_path", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "lengths [1024] exceed max_length 512" in done.stderr and "| pydoc_topics" in done.stdout
    data = json.loads(next(tmp_path.rglob("length_*.json")).read_text())
    assert [r["length"] for r in data["table"]] == [64, 128, 256, 512]
    assert [r["n_docs"] for r in data["table"]] == [2, 2, 2, 2]
    assert data["documents"]["pydoc_topics"]["lengths_above_model_limit"] == [1024]
    assert data["config"]["min_tokens"] == 512 and data["config"]["lengths_asked"] == [64, 128, 256, 512, 1024]


def test_a_curve_with_few_samples_per_point_is_warned_and_marked(llama_path, tiny_corpus, tmp_path, capsys):
    out = length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="8,16,32", min_tokens=12,
                            metrics="matrix_entropy", output_path=tmp_path)
    check_outputs(out, ["task", "length", "n_samples"])
    points = {r["length"]: r["n_samples"] for r in out["table"]}
    assert all(n < 30 for n in points.values())  # the tiny corpus has 20 documents
    found = [w for e in out["results"].values() for w in e["warnings"] if w["code"] == "few_samples_point"]
    assert len(found) == 1
    assert found[0]["message"].startswith("curve tiny: 3 of 3 points have fewer than 30 samples")
    assert ", ".join(f"{L}: n = {n}" for L, n in points.items()) in found[0]["message"]
    assert capsys.readouterr().err.count("[few_samples_point]") == 1
    assert out["outputs"]["plots"]
    # a threshold the points meet: no curve warning
    below = min(points.values())
    quiet = length_experiment(f"pretrained={llama_path}", str(tiny_corpus), lengths="8,16,32", min_tokens=12,
                              metrics="matrix_entropy", output_path=None, caveat=[f"min_samples={below}"])
    assert not [w for e in quiet["results"].values() for w in e["warnings"] if w["code"] == "few_samples_point"]


def test_fixed_tokens_is_refused_by_length(llama_path, tiny_corpus):
    with pytest.raises(MatrixEvalError, match="--fixed_tokens does not apply"):
        length_experiment(f"pretrained={llama_path}", str(tiny_corpus), fixed_tokens=8, output_path=None)
