"""Every row of the README's bad-input table: what the user gets, end to end through the CLI or evaluate()."""

import json

import pytest
import torch

from matrixeval import evaluate
from matrixeval.cli import main
from tests.tiny_models import TINY_TEXTS, make_tiny_bert, make_tiny_causal_lm


@pytest.fixture()
def gpt2(tiny_root):
    return make_tiny_causal_lm(tiny_root, "gpt2")


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _cli_error(capsys, argv) -> str:
    """Run the CLI expecting a user error: exit 2 and exactly one line on stderr, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line.strip() and "sample/s" not in line]  # the progress bar may precede it
    assert code == 2
    assert len(err) == 1 and err[0].startswith("matrixeval: error: "), err
    return err[0]


def test_empty_and_whitespace_texts_are_dropped_and_counted(gpt2, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [{"text": TINY_TEXTS[0]}, {"text": ""}, {"text": "   \n "}, {"text": TINY_TEXTS[1]}])
    r = evaluate(f"pretrained={gpt2}", str(data), output_path=None)["results"]["d"]
    assert r["n_samples"] == 2 and r["skipped_by_status"]["empty_text"] == 2 and r["n_skipped"] == 2


def test_one_token_text_is_too_few_tokens(gpt2, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [{"text": "cat"}, {"text": TINY_TEXTS[0]}, {"text": TINY_TEXTS[2]}])
    r = evaluate(f"pretrained={gpt2}", str(data), output_path=None)["results"]["d"]
    assert r["n_samples"] == 2 and r["skipped_by_status"] == {"too_few_tokens": 1}


def test_long_text_is_truncated_and_counted(gpt2, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [{"text": " ".join(TINY_TEXTS)}, {"text": TINY_TEXTS[0]}])
    out = evaluate(f"pretrained={gpt2}", str(data), max_length=16, output_path=tmp_path, log_samples=True)
    r = out["results"]["d"]
    assert r["n_truncated"] == 1 and r["n_samples"] == 2
    first = json.loads(next(tmp_path.rglob("samples_d_*.jsonl")).read_text().splitlines()[0])
    assert first["n_input_tokens"] == 16 and first["truncated"] is True


def test_malformed_jsonl_line_fails_with_file_and_line_or_is_skipped(gpt2, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"text": TINY_TEXTS[0]}, '{"text": "broken', {"text": TINY_TEXTS[1]}])
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2}", "--tasks", str(data), "--output_path", str(tmp_path)])
    assert f"{data}:2" in msg
    r = evaluate(f"pretrained={gpt2}", str(data), on_error="skip", output_path=None)["results"]["d"]
    assert r["n_samples"] == 2 and r["skipped_by_status"]["malformed_line"] == 1


def test_missing_field(gpt2, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"body": TINY_TEXTS[0]}])
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2}", "--tasks", str(data), "--text_field", "text"])
    assert "text" in msg and "body" in msg


def test_non_utf8_file(gpt2, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"text": "caf\xe9 au lait"}\n')
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2}", "--tasks", str(data)])
    assert "UTF-8" in msg and str(data) in msg


@pytest.mark.parametrize("flag,value,expected", [
    ("--tasks", "hh_rlfh", "hh_rlhf"),
    ("--metrics", "matrix_entropi", "matrix_entropy"),
    ("--layers", "7", "0..3"),
])
def test_unknown_task_metric_layer_list_the_valid_ones(gpt2, tiny_corpus, capsys, flag, value, expected):
    argv = ["run", "--model_args", f"pretrained={gpt2}", "--tasks", str(tiny_corpus), flag, value]
    assert expected in _cli_error(capsys, argv)


def test_model_path_that_does_not_exist(tmp_path, capsys):
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={tmp_path / 'nope'}"])
    assert "nope" in msg


def test_loss_on_an_encoder_is_refused(tiny_root, tiny_corpus, capsys):
    bert = make_tiny_bert(tiny_root)
    capsys.readouterr()
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={bert}",
                              "--tasks", str(tiny_corpus), "--metrics", "loss"])
    assert "LM head" in msg


def test_fp16_overflow_is_nonfinite_counted_and_excluded(tiny_root, tmp_path, caplog):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = make_tiny_causal_lm(tiny_root, "gpt2")
    model, tok = AutoModelForCausalLM.from_pretrained(src), AutoTokenizer.from_pretrained(src)
    with torch.no_grad():  # one word's embedding beyond fp16's range (65504): inf once loaded as float16
        model.transformer.wte.weight[tok.convert_tokens_to_ids("cat")] = 1e6
    path = tmp_path / "overflow"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    texts = [t for t in TINY_TEXTS]
    data = _jsonl(tmp_path / "d.jsonl", [{"text": t} for t in texts])
    n_cat = sum("cat" in t.split() for t in texts)
    out = evaluate(f"pretrained={path},dtype=float16", str(data), metrics="matrix_entropy", output_path=None)
    r = out["results"]["d"]
    assert r["skipped_by_status"] == {"nonfinite": n_cat} and r["n_samples"] == len(texts) - n_cat
    assert r["matrix_entropy"] is not None and r["matrix_entropy"] == r["matrix_entropy"]  # finite mean
    assert "bfloat16" in caplog.text


def test_zero_valid_samples_is_an_error_and_writes_no_results(gpt2, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"text": "cat"}, {"text": "dog"}])
    out_dir = tmp_path / "out"
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2}", "--tasks", str(data), "--output_path", str(out_dir)])
    assert "zero valid samples" in msg
    assert not list(out_dir.rglob("results_*.json"))


def _overflowing(tiny_root, tmp_path, family: str, value: float):
    """A tiny model with the word "cat" embedded at `value` in every coordinate: hidden states overflow to NaN/Inf
    in any text that holds it (float32 overflows at 3e38 once LayerNorm sums 32 of them; float16 at 65504).
    GPT-2 ties its output layer to that row, so every text's logits overflow; GPT-NeoX's are untied."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = make_tiny_causal_lm(tiny_root, family)
    model, tok = AutoModelForCausalLM.from_pretrained(src), AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        model.get_input_embeddings().weight[tok.convert_tokens_to_ids("cat")] = value
    path = tmp_path / f"overflow-{family}-{value:g}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _subprocess_cli(*argv, cwd):
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "matrixeval", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_one_nonfinite_sample_leaves_token_weighted_values_over_the_valid_ones(tiny_root, tmp_path):
    import math

    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _overflowing(tiny_root, tmp_path, "gpt_neox", 3e38)
    texts = TINY_TEXTS[:6]  # only the first holds "cat"
    assert [("cat" in t.split()) for t in texts] == [True] + [False] * 5
    data = _jsonl(tmp_path / "d.jsonl", [{"text": t} for t in texts])
    proc = _subprocess_cli("run", "--model_args", f"pretrained={path}", "--tasks", data, "--metrics",
                           "matrix_entropy,loss,perplexity", "--output_path", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NaN/Inf loss" in proc.stderr and "loss_n_nonfinite" in proc.stderr
    r = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())["results"]["d"]
    # independent: HF's own mean NLL (labels=) per valid text, batch size 1, float32
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    nll, n_targets = [], []
    with torch.no_grad():
        for t in texts[1:]:
            enc = tok(t, return_tensors="pt")
            n = enc["input_ids"].shape[1] - 1
            nll.append(model(**enc, labels=enc["input_ids"]).loss.item() * n)
            n_targets.append(n)
    losses = [a / n for a, n in zip(nll, n_targets)]
    assert r["loss_n_nonfinite"] == 1 and r["loss_n_samples"] == 5
    assert r["skipped_by_status"] == {"nonfinite": 1}
    assert r["loss_token_weighted"] == pytest.approx(sum(nll) / sum(n_targets), rel=1e-5)
    assert r["perplexity_token_weighted"] == pytest.approx(math.exp(sum(nll) / sum(n_targets)), rel=1e-5)
    assert r["loss"] == pytest.approx(sum(losses) / 5, rel=1e-5)
    assert r["perplexity"] == pytest.approx(sum(math.exp(x) for x in losses) / 5, rel=1e-5)
    assert r["perplexity_of_mean_loss"] == pytest.approx(math.exp(sum(losses) / 5), rel=1e-5)


def test_every_sample_nonfinite_names_the_overflow(tiny_root, tmp_path):
    path = _overflowing(tiny_root, tmp_path, "gpt2", 1e6)  # beyond float16's range
    data = _jsonl(tmp_path / "d.jsonl", [{"text": f"the cat {t}"} for t in TINY_TEXTS[:4]])
    proc = _subprocess_cli("run", "--model_args", f"pretrained={path},dtype=float16", "--tasks", data,
                           "--output_path", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("matrixeval: error:")]
    assert len(errors) == 1, proc.stderr
    assert "zero valid samples" in errors[0] and "'nonfinite': 4" in errors[0]
    assert "overflow" in errors[0] and "dtype=bfloat16" in errors[0] and "longer texts" not in errors[0]
    assert not list((tmp_path / "out").rglob("results_*.json"))
