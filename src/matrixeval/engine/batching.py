"""Tokenised samples and length-sorted batches whose composition never depends on what is already done.

A batch plan is a pure function of the documents, their token lengths and the batch size, so an
interrupted run, a resumed run and a run on another number of ranks all put the same samples side by
side and get bit-identical numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import Document


@dataclass(frozen=True)
class Encoded:
    """One document as model input. `truncated` counts texts cut at max_length."""

    doc_id: int
    input_ids: tuple[int, ...]
    truncated: bool
    span_start: int = 0  # tokens before this index are context: in the model's input, in no metric
    span_stop: int | None = None  # tokens from this index on (trailing special tokens) are in no metric either
    # Rolling mode: the windows that score every token of the whole document (engine.rolling); None otherwise.
    windows: tuple | None = None
    # Augmentation metrics: the document's augmented views, each encoded as a plain document; None otherwise.
    views: tuple["Encoded", ...] | None = None


def encode(tokenizer, documents: Sequence[Document], max_length: int) -> list[Encoded]:
    """Tokenise every document (special tokens as the model expects them), truncating at max_length.

    A document with a `context` (an empty one included) is a continuation: the tokenizer's leading special
    tokens (e.g. BOS, [CLS]), then the context's tokens, then the text's tokens, each tokenised without special
    tokens, then any trailing special tokens (e.g. [SEP]); only the text's tokens are measured. So the measured
    tokens are the same whatever the context, and a causal LM reads exactly what lm-evaluation-harness feeds
    for a continuation (context with the tokenizer's BOS, then the text).
    """
    out = []
    plain = [doc for doc in documents if doc.context is None]
    full = tokenizer([d.text for d in plain], add_special_tokens=True, truncation=False, verbose=False,
                     return_attention_mask=False)["input_ids"] if plain else []
    by_id = {doc.doc_id: ids for doc, ids in zip(plain, full)}
    for doc in documents:
        if doc.context is not None:
            out.append(_continuation(tokenizer, doc, max_length))
            continue
        ids = by_id[doc.doc_id]
        cut = len(ids) > max_length
        if cut:  # keep trailing special tokens (e.g. [SEP]) the way the tokenizer's own truncation does
            ids = tokenizer(doc.text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        out.append(Encoded(doc.doc_id, tuple(ids), cut))
    return out


def special_affixes(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after `text` (e.g. [BOS] and [], or [CLS] and [SEP])."""
    bare = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    wrapped = tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
    for start in range(len(wrapped) - len(bare) + 1):
        if wrapped[start : start + len(bare)] == bare:
            return wrapped[:start], wrapped[start + len(bare) :]
    return tokenizer("", add_special_tokens=True)["input_ids"], []  # specials that re-tokenise the text: lead only


def _continuation(tokenizer, doc: Document, max_length: int) -> Encoded:
    text = tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"]
    ctx = tokenizer(doc.context, add_special_tokens=False, verbose=False)["input_ids"] if doc.context else []
    lead, trail = special_affixes(tokenizer, doc.text or doc.context)
    head = lead + ctx
    room = max(max_length - len(head) - len(trail), 0)
    cut = len(text) > room
    ids = head + text[:room] + trail
    return Encoded(doc.doc_id, tuple(ids[:max_length]), cut, span_start=len(head),
                   span_stop=min(len(head) + min(len(text), room), max_length))


def plan_batches(items: Sequence[Encoded], batch_size: int) -> list[list[int]]:
    """Indices into `items`, longest first (out-of-memory shows up on the first batch, padding stays small)."""
    order = sorted(range(len(items)), key=lambda i: (-len(items[i].input_ids), items[i].doc_id))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(items: Sequence[Encoded], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and span mask (B, N_max) on `device`.

    The span mask is true on real tokens from each sample's span_start up to its span_stop: the tokens metrics read.
    """
    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    span = torch.zeros((len(items), width), dtype=torch.bool)
    for row, it in enumerate(items):
        ids[row, : len(it.input_ids)] = torch.tensor(it.input_ids, dtype=torch.long)
        mask[row, : len(it.input_ids)] = 1
        span[row, it.span_start : len(it.input_ids) if it.span_stop is None else it.span_stop] = True
    return ids.to(device), mask.to(device), span.to(device)
