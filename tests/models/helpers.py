"""Small helpers shared by the models tests (fixtures live in conftest.py)."""

import torch

from matrixeval.models import LoadedModel, load_model, parse_model_args
from tests.tiny_models import CAUSAL_FAMILIES, TINY_TEXTS, make_tiny_bert, make_tiny_causal_lm

ALL_FAMILIES = (*CAUSAL_FAMILIES, "bert")


def tiny_path(root, family: str):
    return make_tiny_bert(root) if family == "bert" else make_tiny_causal_lm(root, family)


def load(path, **args) -> LoadedModel:
    """``load_model`` through the user-facing ``model_args`` string, on the CPU."""
    spec = ",".join([f"pretrained={path}", *(f"{k}={v}" for k, v in args.items())])
    return load_model(parse_model_args(spec), device="cpu")


BATCH_TEXTS = ("the cat sat on the mat .", TINY_TEXTS[2], "why do birds sing ?")


def right_padded_batch(lm: LoadedModel, texts=BATCH_TEXTS) -> dict[str, torch.Tensor]:
    batch = lm.tokenizer(list(texts), padding=True, return_tensors="pt")
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max(), "the test batch must contain padding"
    assert bool((batch["attention_mask"][:, 0] == 1).all()), "the test batch must be right-padded"
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
