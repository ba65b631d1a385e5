"""Which hidden states to capture, in Hugging Face ``hidden_states`` numbering."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import MatrixEvalError

__all__ = ["resolve_layers"]


def resolve_layers(spec: str | int | Sequence[int] | None, num_hidden_layers: int) -> list[int]:
    """Turn a layer spec into sorted, unique indices into ``0..num_hidden_layers``.

    Index 0 is the embedding output (input of the first block), ``L = num_hidden_layers`` the final output
    (``last_hidden_state``). ``None``/``"last"`` -> ``[L]``, ``"all"`` -> ``[0..L]``, ``"0,6,-1"`` (``last`` may
    stand for ``L`` in the list) or a list of ints: negative indices count from the end of ``0..L`` (``-1`` is ``L``).

    Example:
        >>> resolve_layers("0,-1,3", 6)
        [0, 3, 6]
    """
    top = num_hidden_layers
    if spec is None:
        return [top]
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "last"):
            return [top]
        if text == "all":
            return list(range(top + 1))
        indices = [top if part.strip() == "last" else _parse_int(part, spec) for part in text.split(",") if part.strip()]
    elif isinstance(spec, int) and not isinstance(spec, bool):
        indices = [spec]
    else:
        indices = list(spec)
        if any(isinstance(i, bool) or not isinstance(i, int) for i in indices):
            raise MatrixEvalError(f"layers {indices!r} must be integers, 'last' or 'all'")
    if not indices:
        raise MatrixEvalError(f"layers {spec!r} selects no layer; use 'last', 'all' or indices like '0,6,-1'")
    bad = [i for i in indices if not -(top + 1) <= i <= top]
    if bad:
        raise MatrixEvalError(
            f"layers {bad} out of range for a model with {top} layers; valid: 0..{top} or -{top + 1}..-1"
        )
    return sorted({i % (top + 1) for i in indices})


def _parse_int(part: str, spec: str) -> int:
    try:
        return int(part.strip())
    except ValueError:
        raise MatrixEvalError(
            f"layers {spec!r}: {part.strip()!r} is not an integer; use 'last', 'all' or indices like '0,6,-1'"
        ) from None
