"""`matrixeval run --rolling` and the wikitext recipe from the command line, on the shared wikitext-2 test.txt."""

import json

from matrixeval.cli import main
from tests.conftest import shared_file
from tests.tiny_models import make_tiny_causal_lm


def test_run_rolling_on_wikitext_txt_writes_lm_evals_columns(tiny_root, tmp_path, capsys):
    test_txt = shared_file("wikitext-2/test.txt")
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    code = main(["run", "--model_args", f"pretrained={path}", "--tasks", f"wikitext={test_txt}",
                 "--txt_split", "wikitext", "--limit", "2", "--max_length", "32", "--output_path", str(tmp_path),
                 "--log_samples"])
    assert code == 0
    out = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    entry = out["results"]["wikitext"]
    for name in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert entry[name] > 1 if name != "bits_per_byte" else entry[name] > 0
        assert out["higher_is_better"][name] is False
    assert entry["rolling"] is True and out["config"]["rolling_tasks"] == ["wikitext"]
    assert "first max_length (32) tokens" in out["config"]["tokens_read"]["spectral"]
    assert "every token" in out["config"]["tokens_read"]["loss"]
    samples = [json.loads(line) for line in next(tmp_path.rglob("samples_wikitext_*.jsonl")).open()]
    assert all(s["loglikelihood"] < 0 and s["words"] > 0 and s["bytes"] >= s["words"] for s in samples)
    assert entry["n_rolling_tokens"] == sum(s["n_targets"] for s in samples) > 32 * len(samples)
    table = capsys.readouterr().out
    assert "word_perplexity" in table


def test_rolling_metric_without_rolling_fails_before_the_model_loads(tiny_corpus, tmp_path, capsys):
    code = main(["run", "--model_args", f"pretrained={tmp_path / 'no-such-model'}", "--tasks", str(tiny_corpus),
                 "--metrics", "loss,word_perplexity", "--output_path", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("matrixeval: error: word_perplexity") and "--rolling" in err[0]
