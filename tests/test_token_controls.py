"""--min_tokens and --fixed_tokens against token counts taken independently with the model's own tokenizer."""

import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from matrixeval import evaluate
from matrixeval.data import TaskRecipe, register_task
from tests.tiny_models import make_tiny_bert


def _texts(corpus):
    return [json.loads(line)["text"] for line in open(corpus)]


def _lengths(model, corpus):
    tok = AutoTokenizer.from_pretrained(model)
    return [len(tok(t)["input_ids"]) for t in _texts(corpus)]  # [CLS] ... [SEP]: what the model reads


def test_min_tokens_drops_and_counts_the_short_documents(tiny_root, tiny_corpus, tmp_path):
    model = make_tiny_bert(tiny_root)
    n = _lengths(model, tiny_corpus)
    floor = sorted(n)[len(n) // 2]  # about half the documents fall below it
    out = evaluate(f"pretrained={model}", str(tiny_corpus), metrics="effective_rank", output_path=tmp_path,
                   min_tokens=floor, log_samples=True)
    entry = out["results"]["tiny"]
    short = sum(x < floor for x in n)
    assert 0 < short < len(n)
    assert entry["skipped_by_status"]["too_short"] == short
    assert entry["n_samples"] == len(n) - short and entry["min_tokens"] == floor
    samples = out["results_path"].replace("results_", "samples_tiny_").replace(".json", ".jsonl")
    records = [json.loads(line) for line in open(samples)]
    assert sorted(r["doc_id"] for r in records) == [i for i, x in enumerate(n) if x >= floor]
    assert all(r["n_input_tokens"] == n[r["doc_id"]] for r in records)  # not cut: below max_length
    # another floor is another store key: nothing reused; the same floor again reuses every sample
    again = evaluate(f"pretrained={model}", str(tiny_corpus), metrics="effective_rank", output_path=tmp_path,
                     min_tokens=floor)
    assert again["results"]["tiny"]["n_resumed"] == len(n) - short
    other = evaluate(f"pretrained={model}", str(tiny_corpus), metrics="effective_rank", output_path=tmp_path,
                     min_tokens=floor + 1)
    assert other["results"]["tiny"]["n_resumed"] == 0


def test_fixed_tokens_cuts_every_document_to_exactly_l(tiny_root, tiny_corpus, tmp_path):
    model = make_tiny_bert(tiny_root)
    n = _lengths(model, tiny_corpus)
    length = 24
    out = evaluate(f"pretrained={model}", str(tiny_corpus), metrics="matrix_entropy", output_path=tmp_path,
                   fixed_tokens=length, log_samples=True)
    entry = out["results"]["tiny"]
    assert entry["skipped_by_status"]["too_short"] == sum(x < length for x in n)
    assert entry["n_samples"] == sum(x >= length for x in n) and entry["fixed_tokens"] == length
    samples = out["results_path"].replace("results_", "samples_tiny_").replace(".json", ".jsonl")
    records = [json.loads(line) for line in open(samples)]
    assert {r["n_input_tokens"] for r in records} == {length}
    assert {r["layers"][str(entry["primary_layer"])]["n_tokens"] for r in records} == {length}  # every matrix has N = L rows
    assert sum(r["truncated"] for r in records) == sum(x > length for x in n) > 0
    # cutting on purpose is not the truncated caveat
    assert "truncated" not in {w["code"] for w in entry["warnings"]}
    assert out["config"]["fixed_tokens"] == length and out["config"]["max_length"] == length


def test_a_tasks_own_min_tokens_applies_unless_the_flag_is_given(tiny_root, tiny_corpus):
    model = make_tiny_bert(tiny_root)
    n = _lengths(model, tiny_corpus)
    texts = _texts(tiny_corpus)
    register_task(TaskRecipe("tiny_min_tokens", "tiny texts with a floor", ("text",), lambda r: r["text"],
                             builtin=lambda: [{"text": t} for t in texts], min_tokens=20))
    own = evaluate(f"pretrained={model}", "tiny_min_tokens", metrics="effective_rank", output_path=None)
    assert own["results"]["tiny_min_tokens"]["skipped_by_status"]["too_short"] == sum(x < 20 for x in n)
    flag = evaluate(f"pretrained={model}", "tiny_min_tokens", metrics="effective_rank", output_path=None,
                    min_tokens=30)
    assert flag["results"]["tiny_min_tokens"]["skipped_by_status"]["too_short"] == sum(x < 30 for x in n)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "matrixeval", *args], capture_output=True, text=True, timeout=120)


def test_cli_token_controls_and_caveat_flags_fail_in_one_line(tiny_root, tiny_corpus, tmp_path):
    model = make_tiny_bert(tiny_root)
    both = _cli("run", "--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--min_tokens", "3",
                "--fixed_tokens", "8", "--output_path", str(tmp_path))
    assert both.returncode == 2 and both.stderr.strip().splitlines() == [
        "matrixeval: error: give --min_tokens or --fixed_tokens, not both (--fixed_tokens L already drops "
        "documents of fewer than L tokens)"]
    bad = _cli("run", "--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--caveat", "min_sample=3")
    assert bad.returncode == 2 and "unknown caveat threshold 'min_sample'" in bad.stderr
    assert "Traceback" not in bad.stderr
    quiet = _cli("run", "--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--caveat", "min_samples=20",
                 "--metrics", "effective_rank", "--output_path", str(tmp_path))
    loud = _cli("run", "--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--caveat", "min_samples=21",
                "--metrics", "effective_rank", "--output_path", str(tmp_path))
    assert quiet.returncode == loud.returncode == 0
    assert "[few_samples]" not in quiet.stderr and "`few_samples`" not in quiet.stdout  # 20 samples meet 20
    assert "[few_samples] only 20 valid samples (threshold 21)" in loud.stderr and "`few_samples`" in loud.stdout
    never = _cli("run", "--model_args", f"pretrained={model}", "--tasks", str(tiny_corpus), "--min_tokens", "1000",
                 "--output_path", str(tmp_path))
    assert never.returncode == 2 and "exceeds max_length" in never.stderr


@pytest.mark.parametrize("spec", [["min_samples=x"], ["max_timing_spread"], ["max_timing_spread=-1"]])
def test_bad_threshold_values_are_errors(spec):
    from matrixeval.caveats import parse_thresholds
    from matrixeval.errors import MatrixEvalError

    with pytest.raises(MatrixEvalError):
        parse_thresholds(spec)
