"""sentence-ops: the same seed gives the same texts and numbers, another seed other shuffles."""

import json
import math
import statistics
import subprocess
import sys

import pytest

from matrixeval.cli import main
from matrixeval.data.transforms import apply_sentence_op
from matrixeval.experiments.sentence_ops import sentence_ops_experiment

from .conftest import check_outputs, read_jsonl, samples

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
    for op in ("base", "shuffle", "reverse_words", "shuffle_reverse_words"):
        for metric in ("matrix_entropy", "nuclear_norm"):
            assert a["results"][f"sents/{op}"][metric] == b["results"][f"sents/{op}"][metric]
    for op in ("base", "reverse_words"):  # no randomness in these
        assert a["results"][f"sents/{op}"]["matrix_entropy"] == c["results"][f"sents/{op}"]["matrix_entropy"]
    for op in ("shuffle", "shuffle_reverse_words"):
        assert a["results"][f"sents/{op}"]["matrix_entropy"] != c["results"][f"sents/{op}"]["matrix_entropy"]
    texts = [r["text"] for r in read_jsonl(sentences_corpus)]
    assert [apply_sentence_op(t, "shuffle", 1) for t in texts] == [apply_sentence_op(t, "shuffle", 1) for t in texts]
    assert [apply_sentence_op(t, "shuffle", 1) for t in texts] != [apply_sentence_op(t, "shuffle", 2) for t in texts]
    base = {r["op"]: r for r in a["table"]}["base"]
    assert base["matrix_entropy_delta"] == 0.0
    assert a["config"]["ops"] == ["base", "shuffle", "reverse_words", "shuffle_reverse_words"]  # the default


def test_delta_and_its_paired_stderr_against_the_per_document_values(gpt2_path, sentences_corpus, tmp_path):
    out = sentence_ops_experiment(f"pretrained={gpt2_path}", str(sentences_corpus), ops="base,reverse_order,reverse_words",
                                  metrics="matrix_entropy,loss", seed=3, output_path=tmp_path, log_samples=True)
    d = out["config"]["hidden_size"]
    base = {r["doc_id"]: r for r in samples(out, "sents/base")}
    for op in ("reverse_order", "reverse_words"):
        recs = samples(out, f"sents/{op}")
        diffs = [r["layers"]["3"]["entropy"] / math.log(d) - base[r["doc_id"]]["layers"]["3"]["entropy"] / math.log(d)
                 for r in recs]
        row = next(r for r in out["table"] if r["op"] == op)
        assert row["matrix_entropy_delta"] == pytest.approx(statistics.fmean(diffs), abs=1e-12)
        assert row["matrix_entropy_delta_stderr"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(len(diffs)))
        loss_diffs = [r["loss"] - base[r["doc_id"]]["loss"] for r in recs]
        assert row["loss_delta_stderr"] == pytest.approx(statistics.stdev(loss_diffs) / math.sqrt(len(loss_diffs)))


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
    assert main(argv[:-2] + ["--ops", "base,reverse", "--output_path", str(tmp_path)]) == 2
    assert "'reverse' is ambiguous; use reverse_order" in capsys.readouterr().err


def test_cli_subprocess_plots_delta_with_its_interval_named(gpt2_path, sentences_corpus, tmp_path):
    """issue 13: the bar plot shows Δ against base, and says what its error bars are."""
    argv = [sys.executable, "-m", "matrixeval", "experiment", "sentence-ops", "--model_args", f"pretrained={gpt2_path}",
            "--tasks", str(sentences_corpus), "--ops", "base,shuffle,reverse_words", "--metrics", "matrix_entropy",
            "--output_path", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "matrix_entropy_delta_stderr" in done.stdout
    png = next(tmp_path.rglob("sentence-ops_*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_delta_plot_draws_the_table_deltas_and_the_paired_intervals(gpt2_path, sentences_corpus, tmp_path, monkeypatch):
    from matrixeval.report import plots

    drawn = {}
    real = plots.plot_bars
    monkeypatch.setattr(plots, "plot_bars", lambda groups, path, **kw: drawn.update(groups=groups, **kw) or real(
        groups, path, **kw))
    out = sentence_ops_experiment(f"pretrained={gpt2_path}", str(sentences_corpus), ops="base,shuffle,reverse_words",
                                  metrics="matrix_entropy", seed=5, output_path=tmp_path, log_samples=True)
    rows = {r["op"]: r for r in out["table"]}
    assert drawn["groups"] == {"sents": {op: rows[op]["matrix_entropy_delta"] for op in ("shuffle", "reverse_words")}}
    assert drawn["zero_line"] and "95% bootstrap interval" in drawn["error_label"]
    assert "base = sents" in drawn["error_label"] and "12 documents" in drawn["error_label"]
    d = out["config"]["hidden_size"]
    base = {r["doc_id"]: r["layers"]["3"]["entropy"] / math.log(d) for r in samples(out, "sents/base")}
    for op in ("shuffle", "reverse_words"):
        diffs = [r["layers"]["3"]["entropy"] / math.log(d) - base[r["doc_id"]] for r in samples(out, f"sents/{op}")]
        low, high = drawn["errors"]["sents"][op]
        # a percentile bootstrap interval of the mean lies inside the range of the per-document Δ and around the mean
        assert min(diffs) <= low <= statistics.fmean(diffs) <= high <= max(diffs)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs))
        assert high - low == pytest.approx(2 * 1.96 * se, rel=0.5)


def test_the_same_delta_drawer_serves_prompt(gpt2_path, tiny_corpus, tmp_path, monkeypatch):
    from matrixeval.experiments.prompt import prompt_experiment
    from matrixeval.report import plots

    drawn = {}
    monkeypatch.setattr(plots, "plot_bars", lambda groups, path, **kw: drawn.update(groups=groups, **kw) or path)
    out = prompt_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), prompts={"p1": "Be brief.", "p2": "Be kind."},
                            metrics="matrix_entropy", limit=6, output_path=tmp_path)
    rows = {r["prompt"]: r for r in out["table"]}
    assert drawn["groups"] == {"tiny": {p: rows[p]["matrix_entropy_delta"] for p in ("p1", "p2", "average")}}
    assert drawn["zero_line"] and "95% bootstrap interval" in drawn["error_label"] and "none = tiny" in drawn["error_label"]
    low, high = drawn["errors"]["tiny"]["average"]
    assert low <= rows["average"]["matrix_entropy_delta"] <= high


def _unchanged_warnings(out):
    return {name: w for name, e in out["results"].items() for w in e["warnings"]
            if w["code"] == "unchanged_by_operation"}


def test_an_operation_that_leaves_documents_unchanged_is_warned(gpt2_path, tiny_corpus, sentences_corpus, tmp_path,
                                                               capsys):
    texts = [r["text"] for r in read_jsonl(tiny_corpus)]
    same = sum(apply_sentence_op(t, "shuffle", 1) == apply_sentence_op(t, "base", 1) for t in texts)
    assert same / len(texts) > 0.1  # lower-case lines of " ." are single sentences to the splitter
    out = sentence_ops_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), ops="base,shuffle",
                                  metrics="matrix_entropy", seed=1, output_path=tmp_path)
    check_outputs(out, ["task", "op"])
    found = _unchanged_warnings(out)
    assert list(found) == ["tiny/shuffle"]
    assert f"shuffle leaves {same} of {len(texts)} documents ({same / len(texts):.0%}) unchanged" in \
        found["tiny/shuffle"]["message"]
    assert out["documents"]["tiny"]["n_unchanged_shuffle"] == same
    assert capsys.readouterr().err.count("[unchanged_by_operation]") == 1
    # reversing the words of sentences of several words changes every document
    sents = [r["text"] for r in read_jsonl(sentences_corpus)]
    assert all(apply_sentence_op(t, "reverse_words", 1) != apply_sentence_op(t, "base", 1) for t in sents)
    quiet = sentence_ops_experiment(f"pretrained={gpt2_path}", str(sentences_corpus), ops="base,reverse_words",
                                    metrics="matrix_entropy", seed=1, output_path=None)
    assert _unchanged_warnings(quiet) == {}
    # the threshold is settable
    allowed = sentence_ops_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), ops="base,shuffle",
                                      metrics="matrix_entropy", seed=1, output_path=None,
                                      caveat={"max_unchanged_fraction": 1.0})
    assert _unchanged_warnings(allowed) == {}
