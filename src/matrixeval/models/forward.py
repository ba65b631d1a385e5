"""One forward pass that keeps only the requested hidden states (via hooks) and, optionally, per-token NLL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import MatrixEvalError
from .layers import resolve_layers
from .loading import LoadedModel, unwrap

__all__ = ["ForwardOutput", "forward", "score_windows", "transformer_blocks"]


@dataclass
class ForwardOutput:
    """Hidden states of the requested layers and, when asked for, next-token NLL.

    ``hidden[i]`` is ``(B, N, d)`` and equals ``output_hidden_states=True``'s ``hidden_states[i]``.
    ``token_nll[b, t]`` is the float32 NLL of token ``t`` given tokens ``< t``; ``target_mask`` is True where
    that is a real target (not position 0, not padding), and ``token_nll`` is 0 elsewhere.
    """

    hidden: dict[int, torch.Tensor]
    token_nll: torch.Tensor | None
    target_mask: torch.Tensor | None


def forward(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int],
    *,
    need_loss: bool,
) -> ForwardOutput:
    """Run ``lm`` once on a (right-padded) batch under ``torch.inference_mode()``.

    Only ``layers`` (HF numbering, see :func:`resolve_layers`) are kept. Logits are computed only when
    ``need_loss`` is set and the model has an LM head; otherwise the base model runs without its head.
    """
    _check_batch(lm, input_ids, attention_mask)
    wanted = resolve_layers(list(layers), lm.num_hidden_layers) if len(layers) else []
    input_ids = input_ids.to(lm.device)
    attention_mask = attention_mask.to(lm.device)
    model = unwrap(lm.model)
    backbone = model.base_model
    with_loss = need_loss and lm.has_lm_head
    kwargs = {"use_cache": False} if lm.has_lm_head else {}
    hidden: dict[int, torch.Tensor] = {}
    with torch.inference_mode(), _capture(backbone, wanted, lm.num_hidden_layers, hidden):
        out = (model if with_loss else backbone)(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if not with_loss:
            return ForwardOutput(hidden=hidden, token_nll=None, target_mask=None)
        token_nll, target_mask = _token_nll(out.logits, input_ids, attention_mask)
    return ForwardOutput(hidden=hidden, token_nll=token_nll, target_mask=target_mask)


def score_windows(
    lm: LoadedModel, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
) -> list[float]:
    """Summed log-probability of each window's `targets`, read from the logits of the last ``len(targets)``
    positions of its `inputs` (position ``len(inputs) - len(targets) + k`` predicts ``targets[k]``), as
    lm-evaluation-harness scores a continuation. One right-padded forward pass of the LM for all windows; the
    log-softmax in float32, the sum in float64.
    """
    if not lm.has_lm_head:
        raise MatrixEvalError(f"scoring tokens needs a causal LM head and {lm.name} has none; pass a causal LM")
    width = max(len(ids) for ids in inputs)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for row, window in enumerate(inputs):
        ids[row, : len(window)] = torch.tensor(list(window), dtype=torch.long)
        mask[row, : len(window)] = 1
    _check_batch(lm, ids, mask)
    with torch.inference_mode():
        logits = unwrap(lm.model)(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                  use_cache=False).logits
        out = []
        for row, (window, target) in enumerate(zip(inputs, targets)):
            n, stop = len(target), len(window)
            if not 0 < n <= stop:
                raise ValueError(f"a window of {stop} input tokens cannot score {n} targets")
            logprobs = F.log_softmax(logits[row, stop - n : stop].float(), dim=-1)
            picked = logprobs.gather(1, torch.tensor(list(target), device=logprobs.device).unsqueeze(1))
            out.append(picked.double().sum().item())
    return out


def transformer_blocks(backbone: torch.nn.Module, num_hidden_layers: int) -> torch.nn.ModuleList:
    """The shallowest ``nn.ModuleList`` of ``num_hidden_layers`` modules in ``backbone`` (its layer stack)."""
    candidates = [
        (name.count("."), name, module)
        for name, module in backbone.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_hidden_layers
    ]
    if not candidates:
        raise MatrixEvalError(
            f"cannot find the {num_hidden_layers} transformer blocks of {type(backbone).__name__}; "
            "hidden states of this architecture are not supported"
        )
    return min(candidates, key=lambda c: c[:2])[2]


@contextmanager
def _capture(
    backbone: torch.nn.Module, wanted: list[int], num_hidden_layers: int, into: dict[int, torch.Tensor]
) -> Iterator[None]:
    """Hooks that store hidden state ``i`` into ``into[i]``: 0 = input of block 0, ``0 < i < L`` = output of
    block ``i - 1``, ``L`` = the backbone's ``last_hidden_state`` (after any final norm)."""
    top = num_hidden_layers
    handles = []
    try:
        inner = [i for i in wanted if i < top]
        blocks = transformer_blocks(backbone, top) if inner else None
        for i in inner:
            if i == 0:
                handles.append(blocks[0].register_forward_pre_hook(_store_input(into), with_kwargs=True))
            else:
                handles.append(blocks[i - 1].register_forward_hook(_store_output(into, i)))
        if top in wanted:
            handles.append(backbone.register_forward_hook(_store_output(into, top)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _store_input(into: dict[int, torch.Tensor]):
    def hook(module, args, kwargs):
        into[0] = args[0] if args else kwargs["hidden_states"]

    return hook


def _store_output(into: dict[int, torch.Tensor], index: int):
    def hook(module, args, output):
        if hasattr(output, "last_hidden_state"):
            into[index] = output.last_hidden_state
        else:
            into[index] = output[0] if isinstance(output, (tuple, list)) else output

    return hook


def _token_nll(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    ids = input_ids.to(logits.device)
    mask = attention_mask.to(logits.device).bool()
    target = torch.zeros_like(mask)
    target[:, 1:] = mask[:, 1:] & mask[:, :-1]
    labels = ids[:, 1:].masked_fill(~target[:, 1:], -100)
    nll = torch.zeros(ids.shape, dtype=torch.float32, device=logits.device)
    for row in range(ids.shape[0]):  # one row at a time keeps the float32 copy of the logits at (N, vocab)
        nll[row, 1:] = F.cross_entropy(logits[row, :-1].float(), labels[row], reduction="none", ignore_index=-100)
    return nll.to(input_ids.device), target.to(input_ids.device)


def _check_batch(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
        raise MatrixEvalError(
            f"input_ids for {lm.name} must be an integer (batch, tokens) tensor, got {input_ids.dtype} "
            f"of shape {tuple(input_ids.shape)}"
        )
    if attention_mask.shape != input_ids.shape:
        raise MatrixEvalError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape "
            f"{tuple(input_ids.shape)} for {lm.name}; pass the mask the tokenizer returned"
        )
    if lm.max_positions is not None and input_ids.shape[1] > lm.max_positions:
        raise MatrixEvalError(
            f"{input_ids.shape[1]} tokens exceed the {lm.max_positions} positions of {lm.name}; "
            f"truncate inputs to at most {lm.max_positions} tokens"
        )
