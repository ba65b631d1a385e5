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


def test_a_loss_beyond_exp_range_is_an_infinite_perplexity_and_the_results_are_written(tiny_root, tmp_path):
    """issue 16: a per-sample loss above ~709 (exp overflows a float) used to end sentence-ops in an OverflowError
    after all measuring; its perplexity is now inf (null in JSON) and every other number is written."""
    import math

    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = make_tiny_causal_lm(tiny_root, "gpt_neox")  # untied output layer: scaling it scales only the logits
    model, tok = AutoModelForCausalLM.from_pretrained(src), AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        model.get_output_embeddings().weight *= 1e4
    path = tmp_path / "huge-logits"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    texts = [f"{t}. {t}." for t in TINY_TEXTS[:4]]
    with torch.no_grad():  # independent: HF's own mean NLL per text is finite and beyond exp's range
        losses = [model(**(enc := tok(t, return_tensors="pt")), labels=enc["input_ids"]).loss.item() for t in texts]
    assert all(709 < x < math.inf for x in losses), losses
    data = _jsonl(tmp_path / "sents.jsonl", [{"text": t} for t in texts])
    assert main(["experiment", "sentence-ops", "--model_args", f"pretrained={path}", "--tasks", str(data), "--ops",
                 "base,shuffle", "--metrics", "matrix_entropy,perplexity", "--output_path", str(tmp_path / "out")]) == 0
    out = json.loads(next((tmp_path / "out").rglob("sentence-ops_*.json")).read_text())
    base = out["results"]["sents/base"]
    assert base["perplexity"] is None and base["perplexity_token_weighted"] is None  # inf, written as null
    assert base["loss_n_samples"] == 4 and base["loss_n_nonfinite"] == 0  # the losses themselves are finite
    assert 0 < base["matrix_entropy"] < 1 and out["table"][0]["perplexity"] is None



@pytest.mark.parametrize(("flags", "expected"), [
    (["--sample", "--top_p", "2.0"], "top_p must be in (0, 1] (1 keeps every token), got 2.0"),
    (["--sample", "--top_p", "0"], "top_p must be in (0, 1] (1 keeps every token), got 0.0"),
    (["--sample", "--temperature", "inf"], "temperature must be a finite number, > 0 when sampling (e.g. 0.7), got inf"),
    (["--temperature", "nan"], "temperature must be a finite number, > 0 when sampling (e.g. 0.7), got nan"),
])
def test_sampling_settings_out_of_range_fail_before_loading(tiny_corpus, tmp_path, capsys, flags, expected):
    """issue 16: these were accepted; the model path does not exist, so the line proves no model was loaded."""
    msg = _cli_error(capsys, ["experiment", "responses", "--model_args", f"pretrained={tmp_path / 'absent'}",
                              "--tasks", str(tiny_corpus), *flags, "--output_path", str(tmp_path / "out")])
    assert msg == f"matrixeval: error: {expected}"
    assert not (tmp_path / "out").exists()


# --- The same table through `python -m matrixeval` in a subprocess, as a user types it --------------------------

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from tests import faults  # noqa: E402


def _cli(*argv, cwd, delay: float = 0.0, **popen):
    return subprocess.run([sys.executable, "-m", "matrixeval", *map(str, argv)], cwd=cwd, env=faults.env(delay),
                          capture_output=True, text=True, timeout=300, **popen)


def _one_error(proc, code: int = 2) -> str:
    """The exit code, and stderr being one `matrixeval: ...` line with no traceback; returns that line. Caveats
    printed about results measured before the failure (`matrixeval: warning: ...`) are not part of the error."""
    lines = [line for line in proc.stderr.strip().splitlines()
             if line.strip() and not line.startswith("matrixeval: warning: ")]
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("matrixeval: "), lines
    return lines[0]


def _files(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="module")
def corrupt(tiny_root, tmp_path_factory):
    """A copy of the tiny GPT-2 whose model.safetensors is cut in half, as an interrupted download leaves it."""
    out = tmp_path_factory.mktemp("corrupt") / "gpt2-truncated"
    shutil.copytree(make_tiny_causal_lm(tiny_root, "gpt2"), out)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return out


def test_output_path_that_is_a_file_fails_before_loading(corrupt, tiny_corpus, tmp_path):
    # The model's weights are corrupt: seeing the output_path error proves it came before any weight was read.
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    msg = _one_error(_cli("run", "--model_args", f"pretrained={corrupt}", "--tasks", tiny_corpus,
                          "--output_path", target, cwd=tmp_path))
    assert "is a file" in msg and str(target) in msg and "give a folder" in msg
    assert target.read_text() == "keep me"


def test_output_path_and_store_under_a_file_fail_before_loading(corrupt, tiny_corpus, tmp_path, capsys):
    # Root may write anywhere, so "cannot be written" is made real by a path that has a file as a parent.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    msg = _one_error(_cli("run", "--model_args", f"pretrained={corrupt}", "--tasks", tiny_corpus,
                          "--store", blocker / "sub", cwd=tmp_path))
    assert f"store '{blocker / 'sub'}' cannot be created: '{blocker}' is a file" in msg
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={corrupt}", "--tasks", str(tiny_corpus),
                              "--output_path", str(blocker / "sub")])
    assert f"output_path '{blocker / 'sub'}' cannot be created: '{blocker}' is a file" in msg
    assert _files(tmp_path) == [blocker]


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder bind-mounted read-only onto itself (needs root and mount rights; skipped without them)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if not mounted or subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode:
        if mounted:
            subprocess.run(["umount", str(folder)])
        pytest.skip("cannot make a read-only bind mount here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_read_only_output_and_store_fail_before_loading(corrupt, tiny_corpus, tmp_path, read_only_dir, capsys):
    msg = _one_error(_cli("run", "--model_args", f"pretrained={corrupt}", "--tasks", tiny_corpus,
                          "--output_path", read_only_dir / "out", cwd=tmp_path))
    assert f"cannot write into folder '{read_only_dir}' for output_path" in msg and "Read-only file system" in msg
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={corrupt}", "--tasks", str(tiny_corpus),
                              "--store", str(read_only_dir)])
    assert f"cannot write into folder '{read_only_dir}' for store" in msg
    assert _files(read_only_dir) == []


def test_corrupt_safetensors_names_the_file(corrupt, tiny_corpus, tmp_path):
    out = tmp_path / "out"
    msg = _one_error(_cli("run", "--model_args", f"pretrained={corrupt}", "--tasks", tiny_corpus, "--output_path", out,
                          cwd=tmp_path))
    assert str(corrupt / "model.safetensors") in msg and "incomplete or corrupt" in msg and "download" in msg
    assert _files(out) == []


def test_unknown_model_args_key_fails_before_loading(corrupt, tiny_corpus, tmp_path, capsys):
    msg = _one_error(_cli("run", "--model_args", f"pretrained={corrupt},dtpye=bfloat16", "--tasks", tiny_corpus,
                          cwd=tmp_path))
    assert "unknown model_args key 'dtpye'; did you mean 'dtype'?" in msg and "attn_implementation" in msg
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={corrupt},foo=1", "--tasks", str(tiny_corpus)])
    assert "unknown model_args key 'foo'" in msg and "did you mean" not in msg


def test_pass_through_and_config_keys_are_applied(gpt2, tiny_corpus, capsys):
    # n_layer=2 overrides the config: the model has 2 layers, and --layers 3 is refused against the new count.
    out = evaluate(f"pretrained={gpt2},attn_implementation=eager,n_layer=2", str(tiny_corpus), limit=2,
                   output_path=None)
    assert out["config"]["num_layers"] == 2 and out["config"]["layers"] == [2]
    capsys.readouterr()  # that run's stderr (weight-loading bars, its caveats) is not the CLI error's
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2},n_layer=2", "--tasks", str(tiny_corpus),
                              "--layers", "3"])
    assert "model with 2 layers" in msg
    assert "not a boolean" in _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2},use_safetensors=maybe"])


def test_help_lists_the_pass_through_keys(tmp_path):
    from matrixeval.models.args import PASS_THROUGH

    proc = _cli("run", "--help", cwd=tmp_path)
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and all(k in text for k in PASS_THROUGH) and "tokenizer=" in text


def test_metric_and_layers_are_checked_before_loading(corrupt, tiny_corpus, tmp_path, capsys):
    msg = _one_error(_cli("run", "--model_args", f"pretrained={corrupt}", "--tasks", tiny_corpus, "--layers", "7",
                          cwd=tmp_path))
    assert "valid: 0..3" in msg
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={corrupt}", "--tasks", str(tiny_corpus),
                              "--metrics", "matrix_entropi"])
    assert "unknown metric 'matrix_entropi'" in msg


def test_model_folder_without_tokenizer(gpt2, tiny_corpus, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(gpt2 / name, bare / name)
    msg = _one_error(_cli("run", "--model_args", f"pretrained={bare}", "--tasks", tiny_corpus,
                          "--output_path", tmp_path / "out", cwd=tmp_path))
    assert f"no tokenizer found in '{bare}'" in msg and "tokenizer=" in msg
    assert _files(tmp_path / "out") == []
    with_tok = evaluate(f"pretrained={bare},tokenizer={gpt2}", str(tiny_corpus), limit=3, output_path=None)
    plain = evaluate(f"pretrained={gpt2}", str(tiny_corpus), limit=3, output_path=None)
    assert with_tok["results"] == plain["results"]


def _lora(base, where):
    from peft import LoraConfig, get_peft_model

    get_peft_model(base, LoraConfig(r=2, target_modules="all-linear")).save_pretrained(where)
    return where


@pytest.fixture(scope="module")
def foreign_adapters(tiny_root, tmp_path_factory):
    """LoRA adapters made for other bases: a llama (other modules) and a wider GPT-2 (other shapes)."""
    from transformers import AutoModelForCausalLM, GPT2Config

    root = tmp_path_factory.mktemp("adapters")
    llama = AutoModelForCausalLM.from_pretrained(make_tiny_causal_lm(tiny_root, "llama"))
    AutoModelForCausalLM.from_config(GPT2Config(n_embd=48, n_layer=3, n_head=2, n_positions=64,
                                                vocab_size=llama.config.vocab_size)).save_pretrained(root / "wide")
    wide = AutoModelForCausalLM.from_pretrained(root / "wide")
    return {"llama": _lora(llama, root / "llama-lora"), "wide": _lora(wide, root / "wide-lora"), "root": root}


def test_adapter_for_another_base_model(gpt2, tiny_corpus, tmp_path, foreign_adapters, capsys):
    wide = foreign_adapters["wide"]
    msg = _one_error(_cli("run", "--model_args", f"pretrained={gpt2},adapter={wide}", "--tasks", tiny_corpus,
                          cwd=tmp_path))
    assert f"adapter '{wide}' does not fit model '{gpt2}' (size mismatch" in msg
    assert f"it was made for '{foreign_adapters['root'] / 'wide'}'" in msg
    llama = foreign_adapters["llama"]
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2},adapter={llama}", "--tasks", str(tiny_corpus)])
    assert f"adapter '{llama}' does not fit model '{gpt2}'" in msg and "tiny-llama" in msg


def test_empty_tasks_is_an_error(tmp_path):
    msg = _one_error(_cli("run", "--tasks", "", cwd=tmp_path))
    assert "no task given" in msg
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("experiment", ["sampling", "responses", "benchmark", "length", "prompt"])
def test_empty_tasks_is_an_error_in_experiments_with_their_own_default(experiment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = _cli_error(capsys, ["experiment", experiment, "--tasks", ""])
    assert "no task given" in msg
    assert not (tmp_path / "results").exists()


def test_a_plain_file_under_a_name_of_ones_own(gpt2, tmp_path, capsys, monkeypatch):
    # Two files both called dev.jsonl: as bare paths their names collide, named by the user they do not.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _jsonl(tmp_path / "a" / "dev.jsonl", [{"text": t} for t in TINY_TEXTS[:3]])
    _jsonl(tmp_path / "b" / "dev.jsonl", [{"body": t} for t in TINY_TEXTS[3:6]])
    monkeypatch.chdir(tmp_path)
    msg = _cli_error(capsys, ["run", "--model_args", f"pretrained={gpt2}", "--tasks", "a/dev.jsonl,b/dev.jsonl"])
    assert "given twice" in msg and "a=dir1/dev.jsonl" in msg
    proc = _cli("run", "--model_args", f"pretrained={gpt2}", "--tasks", "mytask=a/dev.jsonl,other=b/dev.jsonl",
                "--metrics", "matrix_entropy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(next((tmp_path / "results").rglob("results_*.json")).read_text())
    assert {k: v["n_samples"] for k, v in out["results"].items()} == {"mytask": 3, "other": 3}
    assert out["results"]["other"]["source"] == "b/dev.jsonl"


def _sigint_run(argv, cwd, out, after_lines: int, delay: float = 0.5):
    """Start the CLI as a terminal's foreground job would (its own process group, SIGINT at its default), wait
    until `after_lines` samples are durable, then send SIGINT to the whole group, as Ctrl-C does."""
    proc = subprocess.Popen([sys.executable, "-m", "matrixeval", *map(str, argv)], cwd=cwd, env=faults.env(delay),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while faults.stored_lines(out) < after_lines:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        if time.time() > deadline:
            faults.kill_tree(proc.pid)
            pytest.fail("no samples were stored in time")
        time.sleep(0.02)
    at_signal = faults.stored_lines(out)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err), at_signal


@pytest.mark.slow
def test_ctrl_c_stops_within_a_batch_says_what_is_stored_and_resumes(gpt2, tiny_corpus, tmp_path):
    out = tmp_path / "out"
    argv = ["run", "--model_args", f"pretrained={gpt2}", "--tasks", tiny_corpus, "--batch_size", "2",
            "--output_path", out]
    proc, at_signal = _sigint_run(argv, tmp_path, out, after_lines=4)
    msg = _one_error(proc, code=130)
    lines = faults.stored_lines(out)
    assert lines <= at_signal + 2, "at most the batch in progress may finish after Ctrl-C"
    found = re.search(r"interrupted: (\d+) of 20 samples of task 'tiny' are stored in '(.+)'; re-run the same "
                      r"command to resume$", msg)
    assert found and Path(found[2]).is_dir() and found[2].startswith(str(out)), msg
    stored = int(found[1])
    assert 0 < stored and lines - 1 <= stored <= lines  # the count is what the store holds (a torn line is not)
    assert not list(out.rglob("results_*.json"))
    again = _cli(*argv, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["tiny"]
    assert result["n_resumed"] == stored and result["n_samples"] == 20
    assert f"task tiny: resumed {stored} of 20 from the store (0 torn lines recomputed)" in again.stderr



def test_disk_full_under_an_experiment_names_the_file_and_leaves_nothing_partial(gpt2, tmp_path, tiny_disk):
    """issue 16: the results JSON, tables and plots of an experiment on a full disk: one line naming the real file,
    and every file left behind whole (no 0-byte table, no JSON cut at a page, no temporary name)."""
    corpus = _jsonl(tmp_path / "sents.jsonl", [{"text": f"{t}. {t}."} for t in TINY_TEXTS[:6]])
    msg = _one_error(_cli("experiment", "sentence-ops", "--model_args", f"pretrained={gpt2}", "--tasks", corpus,
                          "--ops", "base,shuffle", "--metrics", "matrix_entropy", "--store", tmp_path / "store",
                          "--output_path", tiny_disk / "out", cwd=tmp_path))
    failed = Path(re.fullmatch(r"matrixeval: error: cannot write '(.+?)': No space left on device; .*", msg)[1])
    assert failed.parent.parent == tiny_disk / "out" and failed.name.startswith("sentence-ops_"), msg
    assert not failed.exists()
    left = _files(tiny_disk)
    assert all(p.stat().st_size > 0 and not p.name.startswith(".") for p in left), left
    for path in left:
        if path.suffix == ".json":
            assert json.loads(path.read_text())["config"]["experiment"] == "sentence-ops"


def test_the_writer_keeps_the_old_file_on_a_failed_write(tmp_path, monkeypatch):
    """A write that fails (here: fsync reporting a full disk) leaves the previous file as it was, no temporary file,
    and says which file in one line."""
    import errno

    from matrixeval.engine import files
    from matrixeval.errors import MatrixEvalError

    target = tmp_path / "results.json"
    files.write_text_atomic(target, "old\n")
    assert target.read_text() == "old\n"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(MatrixEvalError, match=f"^cannot write '{target}': No space left on device; "):
        files.write_text_atomic(target, "new " * 10_000)
    with pytest.raises(MatrixEvalError, match=f"^cannot write '{tmp_path / 'plot.png'}': No space left on device"):
        files.write_bytes_atomic(tmp_path / "plot.png", b"\x89PNG")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    # Under a file, the folder cannot be made: the same one line, naming the file that was asked for.
    with pytest.raises(MatrixEvalError, match=f"^cannot write '{target / 'x.csv'}': "):
        files.write_text_atomic(target / "x.csv", "a,b\n")


@pytest.mark.slow
def test_disk_full_while_storing_names_the_folder_and_the_store_resumes(gpt2, tiny_corpus, tmp_path, tiny_disk):
    argv = ["run", "--model_args", f"pretrained={gpt2}", "--tasks", tiny_corpus, "--batch_size", "2",
            "--output_path", tmp_path / "out"]
    msg = _one_error(_cli(*argv, "--store", tiny_disk / "store", cwd=tmp_path))
    (store,) = (tiny_disk / "store").iterdir()
    assert f"no space left on the device holding the store folder '{store}'" in msg and "re-run" in msg
    assert not list((tmp_path / "out").rglob("results_*.json"))
    intact = faults.stored_lines(tiny_disk)
    assert 0 < intact < 20, "the disk must fill mid-way"
    # The store stays consistent: moved to a disk with room, the same command resumes what it holds.
    shutil.copytree(tiny_disk / "store", tmp_path / "roomy")
    again = _cli(*argv, "--store", tmp_path / "roomy", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())["results"]["tiny"]
    assert result["n_samples"] == 20 and result["n_resumed"] >= intact - 2


def test_disk_full_in_process(monkeypatch, tmp_path):
    """Where no tmpfs can be mounted: ENOSPC from fsync, as a full disk raises it, becomes the one line."""
    import errno

    from matrixeval.engine.store import ShardStore
    from matrixeval.errors import MatrixEvalError

    store = ShardStore(tmp_path / "s", {"k": 1})
    store.append([{"doc_id": 0}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(MatrixEvalError, match=f"no space left on the device holding the store folder '{tmp_path}/s'"):
        store.append([{"doc_id": 1}])
    monkeypatch.undo()
    assert set(ShardStore(tmp_path / "s", {"k": 1}).load()) >= {0}


@pytest.mark.slow
def test_resumed_run_says_how_much_came_from_the_store(gpt2, tiny_corpus, tmp_path):
    argv = ["run", "--model_args", f"pretrained={gpt2}", "--tasks", tiny_corpus, "--batch_size", "2",
            "--metrics", "matrix_entropy", "--output_path", tmp_path]
    first = _cli(*argv, cwd=tmp_path)
    assert first.returncode == 0 and "from the store" not in first.stderr
    faults.tear_last_line(tmp_path)  # the last batch's second sample: that whole batch is recomputed
    again = _cli(*argv, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "task tiny: resumed 18 of 20 from the store (1 torn lines recomputed)" in again.stderr.splitlines()


def test_store_key_holds_torch_and_transformers_versions(gpt2, monkeypatch):
    import transformers

    from matrixeval.engine.store import config_key
    from matrixeval.models import parse_model_args
    from matrixeval.engine.keys import model_identity

    args = parse_model_args(f"pretrained={gpt2}")
    identity = model_identity(args)
    assert (identity["torch"], identity["transformers"]) == (torch.__version__, transformers.__version__)
    for module in (torch, transformers):
        monkeypatch.setattr(module, "__version__", module.__version__ + ".post1")
        assert config_key(model_identity(args)) != config_key(identity)
        monkeypatch.undo()


def _nearly_full(disk, leave: int = 1024) -> None:
    """Fill the tmpfs but `leave` bytes, so the next few kilobytes any command writes hit ENOSPC."""
    import os

    stats = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))


def test_disk_full_under_multimodal_and_compare_by_layer_names_the_file_and_leaves_nothing_partial(
        gpt2, tiny_root, tmp_path, tiny_disk):
    """issue 16 rows: multimodal's results JSON and compare --by_layer's CSV/PNG on a full disk."""
    from tests.tiny_llava import make_images, make_tiny_llava

    llava = make_tiny_llava(tiny_root)
    make_images(tmp_path / "img", ["a.png", "b.png"])
    data = _jsonl(tmp_path / "mm.jsonl", [{"image": n, "instruction": TINY_TEXTS[i], "response": TINY_TEXTS[i + 1]}
                                         for i, n in enumerate(["a.png", "b.png"])])
    _nearly_full(tiny_disk)
    msg = _one_error(_cli("experiment", "multimodal", "--model_args", f"pretrained={llava}", "--tasks", f"d={data}",
                          "--image_root", tmp_path / "img", "--device", "cpu", "--store", tmp_path / "store",
                          "--output_path", tiny_disk / "mm", cwd=tmp_path))
    failed = Path(re.fullmatch(r"matrixeval: error: cannot write '(.+?)': No space left on device; .*", msg)[1])
    assert failed.is_relative_to(tiny_disk / "mm") and failed.name.startswith("multimodal_"), msg
    assert not failed.exists() and [p.name for p in _files(tiny_disk)] == ["filler"]  # nothing partial, no temporary
    texts, runs = _jsonl(tmp_path / "t.jsonl", [{"text": t} for t in TINY_TEXTS[:8]]), []
    for i in range(2):  # two results files with layer profiles, on a roomy disk
        out = _cli("run", "--model_args", f"pretrained={gpt2}", "--tasks", texts, "--layers", "all",
                   "--seed", str(i + 1), "--output_path", tmp_path / f"r{i}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(next((tmp_path / f"r{i}").rglob("results_*.json")))
    msg = _one_error(_cli("compare", *runs, "--by_layer", "--output", tiny_disk / "cmp" / "c", cwd=tmp_path))
    failed = Path(re.fullmatch(r"matrixeval: error: cannot write '(.+?)': No space left on device; .*", msg)[1])
    assert failed.is_relative_to(tiny_disk / "cmp"), msg
    assert not failed.exists()
    assert all(p.stat().st_size > 0 and not p.name.startswith(".") for p in _files(tiny_disk)), _files(tiny_disk)


def test_an_experiments_output_set_is_all_or_nothing(gpt2, tmp_path, monkeypatch):
    """A table that cannot be written takes the results JSON (and the other table) with it: no results file
    stands without its tables, and the re-run writes the whole set from the store."""
    from matrixeval.engine import files
    from matrixeval.errors import MatrixEvalError
    from matrixeval.experiments.sentence_ops import sentence_ops_experiment

    corpus = _jsonl(tmp_path / "sents.jsonl", [{"text": f"{t}. {t}."} for t in TINY_TEXTS[:6]])
    real = files._write_with

    def failing(path, fill):
        if str(path).endswith(".csv"):
            raise files.write_error(path, OSError(28, "No space left on device"))
        return real(path, fill)

    monkeypatch.setattr(files, "_write_with", failing)
    with pytest.raises(MatrixEvalError, match=r"cannot write '.+\.csv': No space left on device"):
        sentence_ops_experiment(f"pretrained={gpt2}", f"s={corpus}", ops="base,shuffle", metrics="matrix_entropy",
                                output_path=tmp_path / "out")
    assert [p for p in _files(tmp_path / "out") if "store" not in p.parts] == []
    monkeypatch.setattr(files, "_write_with", real)
    out = sentence_ops_experiment(f"pretrained={gpt2}", f"s={corpus}", ops="base,shuffle", metrics="matrix_entropy",
                                  output_path=tmp_path / "out")
    assert out["results"]["s/base"]["n_resumed"] == 6
    assert all(Path(out["outputs"][k]).is_file() for k in ("json", "markdown", "csv"))
