"""lm-evaluation-harness's rolling windows: every token of a document scored once, none cut off at max_length.

Pure functions on token ids (no model): :func:`rolling_windows` is lm-eval 0.4.13's
``utils.get_rolling_token_windows`` with ``context_len=1`` followed by ``utils.make_disjoint_window``, and
:func:`window_inputs` is what ``HFLM._loglikelihood_tokens`` then feeds a causal LM for each window:
``(context + continuation)[-(max_length + 1):][:-1]``, scoring the logits of the continuation's tokens.

So the first window reads the prefix token (the tokenizer's BOS, else its EOS) and up to ``max_length - 1``
tokens and predicts the first ``min(max_length, n)`` tokens; each later window predicts the next
``max_length`` tokens (fewer in the last one) from exactly ``max_length`` input tokens, the tokens before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Window", "prefix_token_id", "rolling_token_ids", "rolling_windows", "window_inputs"]


@dataclass(frozen=True)
class Window:
    """One forward pass of a rolling evaluation: the model reads `input_ids` and the logits of its last
    ``len(targets)`` positions score `targets` (position ``len(input_ids) - len(targets) + k`` predicts
    ``targets[k]``)."""

    input_ids: tuple[int, ...]
    targets: tuple[int, ...]


def rolling_windows(tokens: Sequence[int], prefix_token: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """The disjoint (context, continuation) pairs lm-eval scores for `tokens`: the continuations tile `tokens`
    exactly, in order; the first context is ``[prefix_token]``, each later one the ``max_length + 1 - len(continuation)``
    tokens before its continuation (one for a full window).

    Equals ``list(map(make_disjoint_window, get_rolling_token_windows(tokens, prefix_token, max_length, 1)))``.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    tokens = list(tokens)
    if not tokens:
        return []
    first = min(max_length, len(tokens))
    pairs = [([prefix_token], tokens[:first])]
    done = first
    while done < len(tokens):
        end = min(len(tokens), done + max_length)
        # lm-eval's context is the max_length tokens before the window's end, less those predicted: one token for a
        # full window, more for a shorter last one
        pairs.append((tokens[end - max_length - 1 : done], tokens[done:end]))
        done = end
    return pairs


def window_inputs(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int) -> list[Window]:
    """The model input of each (context, continuation) pair as lm-eval's ``HFLM._loglikelihood_tokens`` builds it
    for a causal LM: ``(context + continuation)[-(max_length + 1):][:-1]``, its last ``len(continuation)``
    positions scoring the continuation. Every window's input is at most `max_length` tokens."""
    out = []
    for context, continuation in pairs:
        seq = [*context, *continuation][-(max_length + 1):]
        out.append(Window(tuple(seq[:-1]), tuple(continuation)))
    return out


def prefix_token_id(tokenizer) -> int:
    """The token lm-eval puts before a document's first window: the tokenizer's BOS, else its EOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        from ..errors import MatrixEvalError

        raise MatrixEvalError("rolling loglikelihood needs a BOS or EOS token to start the first window, and this "
                              "tokenizer has neither; drop --rolling")
    return token


def rolling_token_ids(tokenizer, text: str) -> list[int]:
    """The tokens a rolling evaluation predicts, as lm-eval's ``HFLM.tok_encode``: the tokenizer's own special
    tokens (a Llama tokenizer's BOS is then predicted too, after the prefix token), none when the text already
    starts with the prefix token's text."""
    starts = text.startswith(tokenizer.decode(prefix_token_id(tokenizer)))
    return list(tokenizer(text, add_special_tokens=not starts, verbose=False)["input_ids"])
