"""benchmark: accuracy equals a direct log-likelihood computation with HF forwards on the real data files."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.benchmark import benchmark_experiment
from tests.conftest import shared_file

from .conftest import check_outputs, read_jsonl

COLUMNS = ["task", "n_questions", "accuracy", "accuracy_stderr", "acc_norm", "acc_norm_stderr", "matrix_entropy",
           "loss", "perplexity"]
FILES = {"openbookqa": "openbookqa/dev.jsonl", "winogrande": "winogrande/dev_llmfoundry.jsonl",
         "piqa": "piqa/valid_labeled.jsonl"}
N = 10


def _pairs(task, record):
    """(context, continuation) per choice, the gold index and each choice's text, written out per data set."""
    if task == "openbookqa":
        texts = record["choice_texts"]
        return [(record["question_stem"], " " + t) for t in texts], "ABCD".index(record["answer_key"]), texts
    if task == "piqa":
        texts = [record["sol1"], record["sol2"]]
        return [(f"Question: {record['goal']}\nAnswer:", " " + t) for t in texts], record["label"], texts
    rest = record["continuation"]
    return [(c, " " + rest) for c in record["context_options"]], record["gold"], [rest, rest]


def _direct(path, task, records):
    """Per question: the log-likelihood of each choice from one HF forward of context + choice tokens."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    out = []
    for record in records:
        pairs, gold, texts = _pairs(task, record)
        lls = []
        for ctx, cont in pairs:
            c = tok(ctx)["input_ids"]
            ids = c + tok(cont, add_special_tokens=False)["input_ids"]
            if len(ids) > 64:  # the tiny model's positions: such questions are left out
                break
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            lls.append(sum(logp[t - 1, ids[t]].item() for t in range(len(c), len(ids))))
        else:
            out.append((lls, gold, [len(t) for t in texts]))
    return out


def test_accuracy_equals_a_direct_log_likelihood_computation(llama_path, tmp_path):
    tasks = ",".join(f"{name}={shared_file(f)}" for name, f in FILES.items())
    out = benchmark_experiment(f"pretrained={llama_path}", tasks, limit=N, output_path=tmp_path)
    check_outputs(out, COLUMNS)
    assert json.loads(open(out["outputs"]["json"]).read())["higher_is_better"]["accuracy"] is True
    for task, f in FILES.items():
        direct = _direct(llama_path, task, read_jsonl(shared_file(f))[:N])
        scored = out["questions"][task]
        assert len(scored) == len(direct) >= N - 2
        for q, (lls, gold, lengths) in zip(scored, direct):
            assert q["gold"] == gold
            assert q["loglik"] == pytest.approx(lls, abs=1e-3)
        acc = sum(max(range(len(l)), key=lambda i: (l[i], -i)) == g for l, g, _ in direct) / len(direct)
        norm = sum(max(range(len(l)), key=lambda i: (l[i] / n[i], -i)) == g for l, g, n in direct) / len(direct)
        entry = out["results"][task]
        assert entry["accuracy"] == pytest.approx(acc) and entry["acc_norm"] == pytest.approx(norm)
        assert entry["n_questions"] + entry["n_questions_truncated"] == N
        p = entry["accuracy"]
        assert entry["accuracy_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (len(direct) - 1)))
        assert math.isfinite(entry["matrix_entropy"]) and math.isfinite(entry["perplexity"])
        # chance: a uniform guess among each scored question's choices (openbookqa 4, piqa and winogrande 2)
        assert entry["chance"] == pytest.approx(sum(1 / len(l) for l, _, _ in direct) / len(direct))
    assert out["results"]["winogrande"]["acc_norm"] == out["results"]["winogrande"]["accuracy"]


def test_cli_and_errors(gpt2_path, tiny_corpus, tmp_path, capsys):
    data = shared_file(FILES["openbookqa"])
    argv = ["experiment", "benchmark", "--model_args", f"pretrained={gpt2_path}", "--tasks", f"openbookqa={data}",
            "--limit", "4", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    assert "| openbookqa" in capsys.readouterr().out
    result = next(tmp_path.rglob("benchmark_*.json"))
    assert result.with_suffix(".png").exists()
    with pytest.raises(MatrixEvalError, match="is none of them"):
        benchmark_experiment(f"pretrained={gpt2_path}", str(tiny_corpus), output_path=None)
    with pytest.raises(MatrixEvalError, match="causal LM head is needed to score choices"):
        benchmark_experiment(None, f"openbookqa={data}", metrics="matrix_entropy", output_path=None)


def test_fixed_tokens_leaves_the_choices_whole(gpt2_path, tmp_path):
    """--fixed_tokens cuts the task's documents, never the answer choices that are scored together."""
    data = shared_file(FILES["openbookqa"])
    full = benchmark_experiment(f"pretrained={gpt2_path}", f"openbookqa={data}", limit=4, output_path=None)
    fixed = benchmark_experiment(f"pretrained={gpt2_path}", f"openbookqa={data}", limit=4, output_path=None,
                                 fixed_tokens=8)
    assert fixed["questions"]["openbookqa"] == full["questions"]["openbookqa"]
    assert fixed["results"]["openbookqa"]["fixed_tokens"] == 8
