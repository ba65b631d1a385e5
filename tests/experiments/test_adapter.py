"""adapter: the base model and the same model with a real LoRA adapter, checked against HF forwards."""

import json

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
