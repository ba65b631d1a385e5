"""Tiny randomly initialised Hugging Face models saved to disk, for fast offline tests.

``make_tiny_causal_lm(tmp_path, "gpt2" | "gpt_neox" | "llama")`` and ``make_tiny_bert(tmp_path)`` return a
directory that ``from_pretrained`` (and ``matrixeval.models.load_model``) loads offline: 3 layers, hidden size
32, a word-level tokenizer of ~100 words trained on :data:`TINY_TEXTS`. Building is deterministic (seeded,
global RNG untouched) and cached: calling again with the same ``tmp_path`` returns the existing directory.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

__all__ = ["CAUSAL_FAMILIES", "TINY_TEXTS", "make_tiny_bert", "make_tiny_causal_lm"]

CAUSAL_FAMILIES = ("gpt2", "gpt_neox", "llama")
NUM_LAYERS = 3
HIDDEN = 32
MAX_POSITIONS = 64

TINY_TEXTS = [
    "the cat sat on the mat and looked at the dog .",
    "a dog ran across the green field to find a stick .",
    "language models predict the next word from the words before it .",
    "the entropy of a matrix measures how spread out its spectrum is .",
    "we compress text into hidden states and measure their rank .",
    "small models learn fast but forget what they saw yesterday .",
    "in the morning the sun rises over the quiet river .",
    "she wrote a long letter to her friend in another city .",
    "numbers like one two three four five six seven eight nine ten .",
    "why do birds sing when the rain stops falling ?",
]

_CAUSAL_SPECIALS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
_BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def make_tiny_causal_lm(tmp_path: str | Path, family: str, *, seed: int = 0) -> Path:
    """Save a tiny causal LM of ``family`` ("gpt2", "gpt_neox" or "llama") under ``tmp_path`` and return its dir.

    The tokenizer has bos ``<s>``, eos ``</s>``, unk ``<unk>`` and no pad token; the "llama" one prepends
    ``<s>`` to every text, like Llama's.
    """
    if family not in CAUSAL_FAMILIES:
        raise ValueError(f"unknown family {family!r}; use one of {CAUSAL_FAMILIES}")
    out = Path(tmp_path) / f"tiny-{family}-seed{seed}"
    if (out / "config.json").is_file():
        return out
    tokenizer = _word_tokenizer(_CAUSAL_SPECIALS, template="<s> $A" if family == "llama" else None)
    config = _causal_config(family, tokenizer)
    from transformers import AutoModelForCausalLM

    _save(lambda: AutoModelForCausalLM.from_config(config), tokenizer, out, seed)
    return out


def make_tiny_bert(tmp_path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny BERT encoder (``BertModel``, no head) under ``tmp_path`` and return its directory.

    The tokenizer wraps every text as ``[CLS] ... [SEP]`` and pads with ``[PAD]``.
    """
    out = Path(tmp_path) / f"tiny-bert-seed{seed}"
    if (out / "config.json").is_file():
        return out
    from transformers import BertConfig, BertModel

    tokenizer = _word_tokenizer(_BERT_SPECIALS, template="[CLS] $A [SEP]")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
    )
    _save(lambda: BertModel(config), tokenizer, out, seed)
    return out


def _causal_config(family: str, tokenizer):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if family == "gpt2":
        return GPT2Config(n_embd=HIDDEN, n_layer=NUM_LAYERS, n_head=2, n_positions=MAX_POSITIONS, **ids)
    shape = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": 2 * HIDDEN,
        "max_position_embeddings": MAX_POSITIONS,
    }
    if family == "gpt_neox":
        return GPTNeoXConfig(**shape, **ids)
    return LlamaConfig(**shape, num_key_value_heads=1, **ids)


def _word_tokenizer(specials: dict[str, str], template: str | None):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel(unk_token=specials["unk_token"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(TINY_TEXTS, WordLevelTrainer(special_tokens=list(specials.values())))
    if template is not None:
        names = [t for t in template.split() if t != "$A"]
        core.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, core.token_to_id(t)) for t in names]
        )
    return PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=MAX_POSITIONS, **specials)


def _save(build, tokenizer, out: Path, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
