"""responses: greedy generation is deterministic, resumes from its file, and only response tokens are scored."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.prompt import PAPER_PROMPTS
from matrixeval.experiments.responses import format_prompt, generation_settings, responses_experiment
from tests.conftest import shared_file
from tests.metrics import reference as ref

from .conftest import check_outputs, read_jsonl, samples

COLUMNS = ["task", "n_responses", "n_skipped", "mean_response_tokens", "matrix_entropy", "nuclear_norm", "loss"]


def _generate(path, out_dir, **kw):
    tasks = f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}"
    return responses_experiment(f"pretrained={path}", tasks, limit=5, max_new_tokens=6, batch_size=2,
                                output_path=out_dir, **kw)


def test_greedy_responses_are_deterministic_and_scored_alone_like_the_reference(llama_path, tmp_path):
    a = _generate(llama_path, tmp_path / "a", log_samples=True)
    b = _generate(llama_path, tmp_path / "b")
    check_outputs(a, COLUMNS)
    saved_a = read_jsonl(a["generation"]["files"]["alpaca_eval"])
    saved_b = read_jsonl(b["generation"]["files"]["alpaca_eval"])
    assert [r["response"] for r in saved_a] == [r["response"] for r in saved_b]
    assert [r["doc_id"] for r in saved_a] == list(range(5)) and all(r["n_new_tokens"] == 6 for r in saved_a)
    instructions = [r["instruction"] for r in read_jsonl(shared_file("alpaca_eval/alpaca_eval.jsonl"))[:5]]
    assert [r["prompt"] for r in saved_a] == instructions  # no chat template: the instruction as it is
    assert a["generation"]["score_context"] == "none"
    tok = AutoTokenizer.from_pretrained(llama_path)
    model = AutoModelForCausalLM.from_pretrained(llama_path).eval()
    for saved, record in zip(saved_a, samples(a, "alpaca_eval")):
        ids = tok(saved["response"])["input_ids"]  # code/MNN.py: tokenizer(response), BOS included
        layer = record["layers"]["3"]
        assert record["n_input_tokens"] == layer["n_tokens"] + layer["n_dropped"] == len(ids)
        assert ids[0] == tok.bos_token_id and record["n_targets"] == len(ids) - 1
        with torch.no_grad():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        assert layer["matrix_entropy"] == pytest.approx(ref.matrix_entropy(hidden), abs=1e-5)
        assert layer["nuclear_norm"] == pytest.approx(ref.mnn_reference_code(hidden), abs=1e-5)
    again = _generate(llama_path, tmp_path / "a")  # same settings: the saved responses are reused
    assert read_jsonl(again["generation"]["files"]["alpaca_eval"]) == saved_a
    assert again["results"]["alpaca_eval"]["n_resumed"] == 5


def test_score_context_prompt_reads_the_prompt_and_measures_the_response_only(llama_path, tmp_path):
    out = _generate(llama_path, tmp_path, score_context="prompt", log_samples=True)
    tok = AutoTokenizer.from_pretrained(llama_path)
    model = AutoModelForCausalLM.from_pretrained(llama_path).eval()
    saved = read_jsonl(out["generation"]["files"]["alpaca_eval"])
    for it, record in zip(saved, samples(out, "alpaca_eval")):
        head = [tok.bos_token_id] + tok(it["prompt"], add_special_tokens=False)["input_ids"]
        body = tok(it["response"], add_special_tokens=False)["input_ids"]
        layer = record["layers"]["3"]
        assert record["n_input_tokens"] == len(head) + len(body)
        assert layer["n_tokens"] + layer["n_dropped"] == len(body) == record["n_targets"]
        with torch.no_grad():
            hidden = model(torch.tensor([head + body]), output_hidden_states=True).hidden_states[-1][0, len(head):]
        assert layer["matrix_entropy"] == pytest.approx(ref.matrix_entropy(hidden), abs=1e-5)


def test_system_prompts_one_row_each_and_the_reference_preset(llama_path, tmp_path):
    tasks = f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}"
    out = responses_experiment(f"pretrained={llama_path}", tasks, limit=5, batch_size=2, output_path=tmp_path,
                               system_prompts="builtin", preset="reference")
    rows = out["table"]
    assert [r["system_prompt"] for r in rows] == ["none", "prompt1", "prompt2", "prompt3"]
    assert out["system_prompts"] == PAPER_PROMPTS
    gen = out["generation"]
    assert (gen["sample"], gen["temperature"], gen["top_p"], gen["top_k"], gen["max_new_tokens"]) == (
        True, 0.7, 1.0, 0, 1000)
    instructions = [r["instruction"] for r in read_jsonl(shared_file("alpaca_eval/alpaca_eval.jsonl"))[:5]]
    for name in ("none", "prompt1", "prompt2", "prompt3"):
        saved = read_jsonl(gen["files"][f"alpaca_eval/{name}"])
        system = PAPER_PROMPTS.get(name)
        assert [r["prompt"] for r in saved] == [f"{system}\n{i}" if system else i for i in instructions]
        assert all(r["system_prompt"] == system for r in saved)
        assert max(r["n_new_tokens"] for r in saved) > 6  # 1000 asked: as many as the 64 positions leave
    assert set(out["results"]) == {f"alpaca_eval/{n}" for n in ("none", "prompt1", "prompt2", "prompt3")}
    assert generation_settings("reference", temperature=0.5)["temperature"] == 0.5  # an explicit flag wins
    assert generation_settings()["sample"] is False and generation_settings()["max_new_tokens"] == 256
    with pytest.raises(MatrixEvalError, match="unknown preset"):
        generation_settings("paper")


def test_chat_template_with_a_system_turn(llama_path):
    tok = AutoTokenizer.from_pretrained(llama_path)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant :{% endif %}")
    assert format_prompt(tok, "why ?", "be brief .") == "system : be brief . user : why ? assistant :"
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                         "{% endif %}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}")
    assert format_prompt(tok, "why ?", "be brief .") == "user : be brief .\nwhy ? "


def test_seeded_sampling(llama_path, tmp_path):
    one = _generate(llama_path, tmp_path / "1", sample=True, seed=1)
    same = _generate(llama_path, tmp_path / "2", sample=True, seed=1)
    other = _generate(llama_path, tmp_path / "3", sample=True, seed=2)
    responses = [[r["response"] for r in read_jsonl(o["generation"]["files"]["alpaca_eval"])]
                 for o in (one, same, other)]
    assert responses[0] == responses[1] and responses[0] != responses[2]


def test_chat_template_prompt_keeps_one_bos(llama_path):
    tok = AutoTokenizer.from_pretrained(llama_path)
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}user : {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant :{% endif %}")
    prompt = format_prompt(tok, "why do birds sing ?")
    assert prompt == "user : why do birds sing ? assistant :"
    assert tok(prompt)["input_ids"].count(tok.bos_token_id) == 1


def test_cli_scores_given_responses_and_encoders_cannot_generate(tmp_path, capsys):
    given = tmp_path / "model_outputs.jsonl"
    given.write_text("".join(json.dumps({"instruction": f"question {i} ?", "output": "Matrix entropy measures "
                                         f"compression of hidden states, case {i}."}) + "\n" for i in range(4)))
    argv = ["experiment", "responses", "--responses", str(given), "--metrics", "matrix_entropy,nuclear_norm",
            "--output_path", str(tmp_path / "out")]
    assert main(argv) == 0
    assert "| model_outputs" in capsys.readouterr().out
    data = json.loads(next((tmp_path / "out").rglob("responses_*.json")).read_text())
    assert data["results"]["model_outputs"]["n_samples"] == 4 and data["generation"]["source"] == str(given)
    with pytest.raises(MatrixEvalError, match="causal LM head is needed to generate"):
        responses_experiment(None, f"alpaca_eval={shared_file('alpaca_eval/alpaca_eval.jsonl')}", output_path=None)
