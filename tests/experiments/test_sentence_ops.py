"""sentence-ops: the same seed gives the same texts and numbers, another seed other shuffles."""

import json

from matrixeval.cli import main
from matrixeval.data.transforms import apply_sentence_op
from matrixeval.experiments.sentence_ops import sentence_ops_experiment

from .conftest import check_outputs, read_jsonl

COLUMNS = ["task", "op", "n_samples", "matrix_entropy", "matrix_entropy_stderr", "matrix_entropy_delta"]


def _run(path, corpus, seed, out_dir):
    return sentence_ops_experiment(f"pretrained={path}", str(corpus), metrics="matrix_entropy,nuclear_norm",
                                   seed=seed, output_path=out_dir)


def test_same_seed_same_numbers_other_seed_other_shuffles(gpt2_path, sentences_corpus, tmp_path):
    a = _run(gpt2_path, sentences_corpus, 1, tmp_path / "a")
    b = _run(gpt2_path, sentences_corpus, 1, tmp_path / "b")  # fresh store: measured again, not resumed
    c = _run(gpt2_path, sentences_corpus, 2, tmp_path / "c")
    check_outputs(a, COLUMNS)
    assert b["results"]["sents/shuffle"]["n_resumed"] == 0
    for op in ("base", "shuffle", "reverse", "shuffle_reverse"):
        for metric in ("matrix_entropy", "nuclear_norm"):
            assert a["results"][f"sents/{op}"][metric] == b["results"][f"sents/{op}"][metric]
    for op in ("base", "reverse"):  # no randomness in these
        assert a["results"][f"sents/{op}"]["matrix_entropy"] == c["results"][f"sents/{op}"]["matrix_entropy"]
    for op in ("shuffle", "shuffle_reverse"):
        assert a["results"][f"sents/{op}"]["matrix_entropy"] != c["results"][f"sents/{op}"]["matrix_entropy"]
    texts = [r["text"] for r in read_jsonl(sentences_corpus)]
    assert [apply_sentence_op(t, "shuffle", 1) for t in texts] == [apply_sentence_op(t, "shuffle", 1) for t in texts]
    assert [apply_sentence_op(t, "shuffle", 1) for t in texts] != [apply_sentence_op(t, "shuffle", 2) for t in texts]
    base = {r["op"]: r for r in a["table"]}["base"]
    assert base["matrix_entropy_delta"] == 0.0


def test_cli_bar_plot(gpt2_path, sentences_corpus, tmp_path, capsys):
    argv = ["experiment", "sentence-ops", "--model_args", f"pretrained={gpt2_path}", "--tasks", str(sentences_corpus),
            "--ops", "base,shuffle", "--limit", "4", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    assert "| shuffle" in capsys.readouterr().out
    data = json.loads(next(tmp_path.rglob("sentence-ops_*.json")).read_text())
    assert set(data["results"]) == {"sents/base", "sents/shuffle"} and data["config"]["ops"] == ["base", "shuffle"]
    assert len(list(tmp_path.rglob("sentence-ops_*.png"))) == 3  # matrix_entropy, loss, perplexity
    assert main(argv[:-2] + ["--ops", "base,sort", "--output_path", str(tmp_path)]) == 2
    assert "unknown sentence operation 'sort'" in capsys.readouterr().err
