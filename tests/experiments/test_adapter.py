"""adapter: the base model and the same model with a real LoRA adapter, checked against HF forwards."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.adapter import adapter_experiment, with_adapter
from tests.metrics import reference as ref

from .conftest import check_outputs, read_jsonl

COLUMNS = ["task", "n_samples", "matrix_entropy_base", "matrix_entropy_adapter", "matrix_entropy_delta",
           "loss_base", "loss_adapter", "loss_delta"]


@pytest.fixture(scope="module")
def lora(llama_path, tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("lora") / "adapter"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(llama_path)
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(out)
    return out


def _direct(path, adapter, texts):
    """Mean matrix entropy and loss from HF forwards (batch size 1) of the model, with the adapter if given."""
    from peft import PeftModel

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    ent, loss = [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            out = model(**enc, labels=enc["input_ids"], output_hidden_states=True)
            ent.append(ref.matrix_entropy(out.hidden_states[-1][0]))
            loss.append(out.loss.item())
    return sum(ent) / len(ent), sum(loss) / len(loss)


def test_base_and_adapter_side_by_side(llama_path, lora, tiny_corpus, tmp_path):
    out = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), adapter=str(lora), limit=8,
                             metrics="matrix_entropy,loss", output_path=tmp_path)
    check_outputs(out, COLUMNS)
    texts = [r["text"] for r in read_jsonl(tiny_corpus)[:8]]
    row = out["table"][0]
    for role, adapter in (("base", None), ("adapter", lora)):
        ent, loss = _direct(llama_path, adapter, texts)
        assert row[f"matrix_entropy_{role}"] == pytest.approx(ent, abs=1e-5)
        assert row[f"loss_{role}"] == pytest.approx(loss, abs=1e-5)
    assert row["matrix_entropy_delta"] == pytest.approx(row["matrix_entropy_adapter"] - row["matrix_entropy_base"])
    assert abs(row["matrix_entropy_delta"]) > 1e-3
    assert out["config"]["adapter"] == str(lora) and out["config"]["base"]["n_params"] < out["config"]["n_params"]


def test_cli_and_errors(llama_path, lora, tiny_corpus, tmp_path, capsys):
    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--adapter", str(lora),
            "--tasks", str(tiny_corpus), "--limit", "3", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    assert "matrix_entropy_adapter" in capsys.readouterr().out
    data = json.loads(next(tmp_path.rglob("adapter_*.json")).read_text())
    assert set(data["results"]) == {"tiny/base", "tiny/adapter"}
    with pytest.raises(MatrixEvalError, match="already name an adapter"):
        with_adapter(f"pretrained={llama_path},adapter={lora}", str(lora))


def _direct_loss(path, adapter, texts):
    """Mean causal-LM loss of `texts` (one HF forward each) of the model from `path`, with the saved adapter."""
    return _direct(path, adapter, texts)[1]


@pytest.fixture(scope="module")
def trained(llama_path, tiny_corpus, tmp_path_factory):
    from matrixeval.experiments.adapter import LoraTraining

    out_dir = tmp_path_factory.mktemp("train")
    settings = LoraTraining(learning_rate=3e-2, epochs=8, batch_size=4)
    out = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), train=settings, limit=8,
                             metrics="matrix_entropy,loss", output_path=out_dir)
    return out, out_dir


def test_train_lowers_the_loss_on_the_training_texts_by_a_direct_forward(llama_path, tiny_corpus, trained):
    out, out_dir = trained
    check_outputs(out, COLUMNS)
    adapter = out["config"]["adapter"]
    assert adapter.startswith(str(out_dir)) and Path(adapter).name.startswith("lora-")
    texts = [r["text"] for r in read_jsonl(tiny_corpus)[:8]]
    base, tuned = _direct_loss(llama_path, None, texts), _direct_loss(llama_path, adapter, texts)
    assert tuned < base - 0.1, (base, tuned)
    row = out["table"][0]
    assert row["loss_base"] == pytest.approx(base, abs=1e-5)
    assert row["loss_adapter"] == pytest.approx(tuned, abs=1e-5)
    training = out["config"]["training"]
    assert training["n_steps"] == 8 * 2 and training["n_texts"] == 8  # 8 texts in batches of 4, 8 epochs
    assert training["settings"]["target_modules"] == ["q_proj", "v_proj"]  # PEFT's choice for Llama
    assert training["settings"]["r"] == 8 and training["settings"]["lora_alpha"] == 16
    saved = json.loads((Path(adapter) / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["lora_alpha"] == 16 and saved["lora_dropout"] == 0.05


def test_training_is_seeded(llama_path, tiny_corpus, trained, tmp_path):
    from safetensors.torch import load_file

    from matrixeval.experiments.adapter import LoraTraining

    out, _ = trained
    again = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), limit=8, metrics="loss",
                               train=LoraTraining(learning_rate=3e-2, epochs=8, batch_size=4), output_path=tmp_path)
    first = load_file(Path(out["config"]["adapter"]) / "adapter_model.safetensors")
    second = load_file(Path(again["config"]["adapter"]) / "adapter_model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), limit=8, metrics="loss", seed=7,
                               train=LoraTraining(learning_rate=3e-2, epochs=8, batch_size=4), output_path=tmp_path)
    third = load_file(Path(other["config"]["adapter"]) / "adapter_model.safetensors")
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_cli_train_prints_the_adapter_path_and_states_defaults(llama_path, tiny_corpus, tmp_path, capsys):
    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--max_steps", "2",
            "--tasks", str(tiny_corpus), "--limit", "4", "--metrics", "loss", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "loss_adapter" in captured.out
    [adapter] = [p for p in tmp_path.glob("*/lora-*") if p.is_dir()]
    assert f"LoRA adapter saved to {adapter}" in captured.err
    training = json.loads((adapter / "training.json").read_text())
    assert training["n_steps"] == 2 and len(training["losses"]) == 2 and training["seed"] == 1234
    with pytest.raises(SystemExit) as exit_:  # --train and --adapter are exclusive
        main([*argv, "--adapter", str(adapter)])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["experiment", "adapter", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--train", "LoRA rank (default: 8)", "(default: 16)", "(default: 0.05)", "(default: 0.0003)",
                   "(default: 3)", "default: none, every epoch runs", "q_proj,v_proj for Llama"):
        assert phrase in text, phrase


def test_train_settings_and_sources_are_checked_before_any_loading(llama_path, lora):
    from matrixeval.experiments.adapter import LoraTraining

    with pytest.raises(MatrixEvalError, match="either --adapter PEFT_DIR .* or --train"):
        adapter_experiment(f"pretrained={llama_path}", "x.jsonl")
    with pytest.raises(MatrixEvalError, match="either --adapter PEFT_DIR .* or --train"):
        adapter_experiment(f"pretrained={llama_path}", "x.jsonl", adapter=str(lora), train=True)
    with pytest.raises(MatrixEvalError, match="already name an adapter"):
        adapter_experiment(f"pretrained={llama_path},adapter={lora}", "x.jsonl", train=True)
    for bad in ({"r": 0}, {"max_steps": 0}, {"lora_dropout": 1.0}, {"learning_rate": -1.0}):
        with pytest.raises(MatrixEvalError, match="must be"):
            LoraTraining(**bad)
