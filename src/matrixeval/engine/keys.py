"""One key for everything matrixeval stores or reuses: samples, responses, adapters, random inits.

A stored result is reused only when all three parts of its key are equal: (a) the model's identity
(:func:`model_identity`: its arguments, its checkpoint files' fingerprint, the library versions), (b) a digest of
the exact inputs (:func:`inputs_digest`: texts, prompts, instructions, images, record ids), and (c) every setting
that changes a number. No other code decides reuse: callers build a key with :func:`make_key` and find its folder
with :func:`key_path`; the folder name carries the key's hash, so a different key is a different folder.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from .store import config_key

__all__ = ["inputs_digest", "key_path", "make_key", "model_identity", "config_identity", "say_reused"]


def model_identity(args: Any) -> dict[str, Any]:
    """The part of a key that names the model and what runs it: its arguments (a `ModelArgs`), its local
    checkpoint files' sizes and mtimes (a model retrained or reconfigured in the same folder gets a new key), and
    the torch and transformers versions (an upgrade can change the numbers, so it never mixes with stored ones)."""
    import torch
    import transformers

    path = Path(args.pretrained)
    files = []
    if path.is_dir():
        files = sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in path.iterdir() if f.is_file())
    return {"model": [args.pretrained, args.revision, args.dtype, args.adapter, args.tokenizer,
                      sorted(args.extra.items())],
            "model_files": files, "torch": torch.__version__, "transformers": transformers.__version__}


def config_identity(config: Any) -> dict[str, Any]:
    """The identity of a model that exists only as a config (a random initialisation): its architecture and every
    config value, so another architecture, depth or width is another identity."""
    import torch
    import transformers

    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    values.pop("_name_or_path", None)
    values.pop("transformers_version", None)
    return {"architectures": values.get("architectures"), "model_type": values.get("model_type"),
            "config": values, "torch": torch.__version__, "transformers": transformers.__version__}


def inputs_digest(items: Iterable[Any]) -> str:
    """sha256 of the exact inputs, in order: each item as canonical JSON (strings, numbers, lists, mappings; bytes
    by their own sha256), so any change to a text, prompt, id or image changes the digest."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            item = {"sha256": hashlib.sha256(item).hexdigest()}
        h.update(json.dumps(item, sort_keys=True, separators=(",", ":"), default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def make_key(kind: str, identity: Mapping[str, Any], inputs: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The whole key of one stored result: what it is, whose it is, of what, and how it was made."""
    return {"kind": kind, "matrixeval": __version__, "identity": dict(identity), "inputs": inputs,
            "settings": dict(settings)}


def key_path(root: str | Path, name: str, key: Mapping[str, Any], suffix: str = "") -> Path:
    """Where the result with this key lives under `root`: ``<name>-<hash of key><suffix>``."""
    safe = str(name).replace("/", "__").replace("\\", "__")
    return Path(root) / f"{safe}-{config_key(key)}{suffix}"


def say_reused(what: str, where: str | Path, detail: str = "") -> None:
    """Say on screen that a stored result is reused (same model, inputs and settings), as `run` does."""
    extra = f" ({detail})" if detail else ""
    print(f"{what}: reusing {str(where)!r}: same model, inputs and settings{extra}", file=sys.stderr)
