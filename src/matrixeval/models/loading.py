"""Load a Hugging Face model and its tokenizer once, and describe what the rest of matrixeval needs to know."""

from __future__ import annotations

import copy
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import MatrixEvalError
from .args import ModelArgs, default_model_path, split_extra

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["LoadedModel", "ModelFacts", "inspect_model", "load_model", "model_name", "n_params_non_embedding",
           "random_init_like", "unwrap"]

_DEFAULT_NAME = "sentence-transformers__all-MiniLM-L6-v2"
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass
class LoadedModel:
    """A model in eval mode with its tokenizer and the facts the engine needs about it."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    args: ModelArgs
    name: str
    n_params: int
    n_params_non_embedding: int
    hidden_size: int
    num_hidden_layers: int
    has_lm_head: bool
    device: torch.device
    dtype: torch.dtype
    max_positions: int | None
    bos_token_id: int | None


@dataclass(frozen=True)
class ModelFacts:
    """What a model's config tells before any weight is read, so that every check that needs no weights can
    run before a large model spends minutes loading."""

    config: PretrainedConfig  # with the config overrides of model_args applied
    has_lm_head: bool
    num_hidden_layers: int
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # model_args passed through to from_pretrained


def inspect_model(args: ModelArgs) -> ModelFacts:
    """Read the config (and the adapter's config), check the model_args keys against it, and describe the model."""
    config = load_config(args)
    kwargs, overrides = split_extra(args, config)
    config.update(overrides)
    if args.adapter:
        _adapter_config(args)
    text = text_config(config)
    return ModelFacts(config, _is_causal_lm(config, args.pretrained), int(text.num_hidden_layers), kwargs)


def load_model(
    args: ModelArgs, device: str | None = None, *, gpus: list[int] | None = None, facts: ModelFacts | None = None
) -> LoadedModel:
    """Load ``args.pretrained`` (plus an optional PEFT adapter) in eval mode on ``device``.

    Causal LMs load with ``AutoModelForCausalLM``, encoders with ``AutoModel``. ``device`` defaults to CUDA when
    available; it is ignored when ``args.device_map`` places the model (accelerate), which then spreads it
    over ``gpus`` only when given (one data-parallel rank's share of the node). The tokenizer loads before the
    weights, so a folder saved without one fails at once. `facts`: from :func:`inspect_model`, if already read.
    """
    target = resolve_device(device) if args.device_map is None else None
    facts = facts or inspect_model(args)
    tokenizer = _load_tokenizer(args)
    model = ready(_load_weights(args, facts, gpus), args, target)
    return _describe(model, tokenizer, args, model_name(args), has_lm_head=facts.has_lm_head)


def ready(model: torch.nn.Module, args: ModelArgs, target: torch.device | None) -> torch.nn.Module:
    """Attach the PEFT adapter if any, move to `target` (None: accelerate placed it) and switch to eval mode."""
    if args.adapter:
        model = attach_adapter(model, args)
    if target is not None:
        model.to(target)
    return model.eval()


def random_init_like(lm: LoadedModel, seed: int) -> LoadedModel:
    """The same architecture and config with fresh random weights (the Diff-eRank baseline).

    Weights are drawn on the CPU under ``torch.manual_seed(seed)`` (so they do not depend on the accelerator),
    in ``lm.dtype``, then moved to ``lm.device``; the global RNG state is left untouched. Any adapter is dropped.
    """
    source = unwrap(lm.model)
    config = copy.deepcopy(source.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = type(source)._from_config(config, **{dtype_key(): lm.dtype})
    device_map = getattr(source, "hf_device_map", None)
    if device_map and len(set(device_map.values())) > 1:
        from accelerate import dispatch_model

        model = dispatch_model(model, device_map=device_map)
    else:
        model.to(lm.device)
    model.eval()
    return _describe(model, lm.tokenizer, lm.args, f"{lm.name}__random{seed}", has_lm_head=lm.has_lm_head)


def model_name(args: ModelArgs) -> str:
    """A directory-safe name, lm-eval style: ``/tmp/x/gpt2`` -> ``__tmp__x__gpt2``; revision and adapter appended.

    The name is one path component that never leaves the folder it is joined to: ``pretrained=..`` (or ``.``)
    becomes ``__`` (``_``), since ``<output_path>/..`` would put results and the store outside ``--output_path``."""
    base = _DEFAULT_NAME if args.pretrained == default_model_path() else _sanitize(args.pretrained)
    if not base.strip("."):
        base = "_" * max(len(base), 1)
    if args.revision:
        base += f"@{_sanitize(args.revision)}"
    if args.adapter:
        base += f"__adapter{_sanitize(args.adapter)}"
    return base


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), else ``model`` itself."""
    peft = sys.modules.get("peft")
    if peft is not None and isinstance(model, peft.PeftModel):
        return model.get_base_model()
    return model


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The language part of a config (multimodal configs nest it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _sanitize(text: str) -> str:
    return re.sub(r'["<>:/|\\?*\[\]\x00-\x1f]+', "__", text)


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise MatrixEvalError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise MatrixEvalError(f"device {device!r} requested but CUDA is not available here; use device='cpu'")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise MatrixEvalError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise MatrixEvalError(f"device {device!r} requested but MPS is not available here; use device='cpu'")
    return resolved


def load_config(args: ModelArgs) -> PretrainedConfig:
    from transformers import AutoConfig

    where = {k: args.extra[k] for k in ("subfolder", "cache_dir") if k in args.extra}
    try:
        return AutoConfig.from_pretrained(
            args.pretrained, revision=args.revision, trust_remote_code=args.trust_remote_code, **where
        )
    except (OSError, ValueError) as err:
        raise not_loadable("model", args.pretrained, err, args.trust_remote_code) from err


def _reason(err: Exception) -> str:
    """The first line of a library's error message (its type where the message is empty)."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def not_loadable(what: str, path: str, err: Exception, trust_remote_code: bool) -> MatrixEvalError:
    if _looks_like_path(path) and not os.path.exists(os.path.expanduser(path)):
        return MatrixEvalError(f"{what} path {path!r} does not exist; pass an existing directory or a Hub ID")
    reason = _reason(err)
    if "trust_remote_code" in str(err) and not trust_remote_code:
        return MatrixEvalError(f"{what} {path!r} ships its own code; add trust_remote_code=true if you trust it")
    return MatrixEvalError(
        f"cannot load {what} {path!r} ({reason}); check the ID, download it into the HF cache, or pass a local path"
    )


def _looks_like_path(text: str) -> bool:
    # Hub IDs are "name" or "owner/name"; anything else with separators is meant as a local path.
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def _is_causal_lm(config: PretrainedConfig, pretrained: str) -> bool:
    if getattr(config, "is_encoder_decoder", False):
        raise MatrixEvalError(
            f"model {pretrained!r} is an encoder-decoder ({config.model_type}); use a decoder-only or encoder model"
        )
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    causal_classes = {c for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for c in _as_tuple(v)}
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return any(a in causal_classes or a.endswith(_CAUSAL_SUFFIXES) for a in architectures)
    model_type = getattr(config, "model_type", None)
    return bool(getattr(config, "is_decoder", False)) or (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def _as_tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def _load_weights(args: ModelArgs, facts: ModelFacts, gpus: list[int] | None = None) -> PreTrainedModel:
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoModelForCausalLM

    auto = AutoModelForCausalLM if facts.has_lm_head else AutoModel
    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    kwargs = {dtype_key(): dtype, "revision": args.revision, "trust_remote_code": args.trust_remote_code,
              **facts.load_kwargs, "config": facts.config}
    if args.device_map is not None:
        kwargs["device_map"] = args.device_map
        if gpus is not None:
            from accelerate.utils import get_max_memory

            # accelerate places weights only on the devices max_memory names: this rank's GPUs (and the CPU).
            kwargs["max_memory"] = {k: v for k, v in get_max_memory().items() if k in gpus or k == "cpu"}
    try:
        return auto.from_pretrained(args.pretrained, **kwargs)
    except SafetensorError as err:
        raise corrupt_weights(args, err) from None
    except pickle.UnpicklingError as err:
        raise refused_pickle(args, err) from None
    except (OSError, ValueError) as err:
        raise not_loadable("model", args.pretrained, err, args.trust_remote_code) from err


def corrupt_weights(args: ModelArgs, err: Exception) -> MatrixEvalError:
    """The one line for a weights file safetensors cannot read (a download cut short, a save interrupted)."""
    reason = _reason(err)
    bad = _unreadable_safetensors(_local_dir(args))
    what = f"weights file {str(bad)!r}" if bad else f"a weights file of model {args.pretrained!r}"
    return MatrixEvalError(f"{what} is incomplete or corrupt ({reason}); download it again or re-save the model")


def refused_pickle(args: ModelArgs, err: Exception) -> MatrixEvalError:
    """The one line for a pickled ``.bin`` checkpoint that ``torch.load(weights_only=True)`` refuses: matrixeval
    never unpickles arbitrary objects (that would run code from the file), so the user converts it."""
    folder = _local_dir(args)
    bins = sorted(folder.glob("*.bin")) if folder is not None else []
    what = f"weights file {str(bins[0])!r}" if len(bins) == 1 else f"a pickled weights file of model {args.pretrained!r}"
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    detail = f"it holds {found.group(1)}, which is not a tensor" if found else _reason(err)
    return MatrixEvalError(
        f"{what} is a pickle that torch.load(weights_only=True) refuses ({detail}); matrixeval never runs a "
        "pickle's code: if you trust its source, load it once yourself with torch.load(weights_only=False) and "
        "re-save the model with save_pretrained(..., safe_serialization=True) (safetensors), then pass that folder")


def _local_dir(args: ModelArgs) -> Path | None:
    """The folder holding the checkpoint's files: the path given, or its snapshot in the HF cache."""
    path = Path(os.path.expanduser(args.pretrained))
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(args.pretrained, revision=args.revision, local_files_only=True))
        except Exception:  # not cached, or not a Hub ID: the message then names the model instead
            return None
    sub = args.extra.get("subfolder")
    return path / sub if sub else path


def _unreadable_safetensors(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    from safetensors import SafetensorError, safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError):
            return file
    return None


def dtype_key() -> str:
    """transformers < 4.56 calls the dtype argument ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _adapter_config(args: ModelArgs) -> Any:
    """The adapter's PEFT config (a small JSON file: read before the base model's weights), checked."""
    from peft import PeftConfig

    try:
        config = PeftConfig.from_pretrained(args.adapter)
    except (OSError, ValueError) as err:
        raise not_loadable("adapter", args.adapter, err, False) from err
    if config.is_prompt_learning:
        raise MatrixEvalError(
            f"adapter {args.adapter!r} is a prompt-learning adapter; only weight adapters such as LoRA are supported"
        )
    return config


def attach_adapter(model: PreTrainedModel, args: ModelArgs) -> torch.nn.Module:
    from peft import PeftModel

    base_of_adapter = _adapter_config(args).base_model_name_or_path
    try:
        with warnings.catch_warnings():
            # peft asks transformers a deprecated question on every load; the user can do nothing about it.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            return PeftModel.from_pretrained(model, args.adapter)
    except (RuntimeError, ValueError, KeyError) as err:
        # A size mismatch (RuntimeError) or target modules the model lacks (ValueError): another base model.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        reason = next((line for line in lines if "size mismatch" in line), lines[0])
        made_for = f"it was made for {base_of_adapter!r}" if base_of_adapter else "it was made for another model"
        raise MatrixEvalError(
            f"adapter {args.adapter!r} does not fit model {args.pretrained!r} ({reason[:240]}); {made_for}: "
            "load it on the base model it was trained on"
        ) from None
    except OSError as err:
        raise not_loadable("adapter", args.adapter, err, False) from err


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "merges.txt",
                    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _no_tokenizer(source: str) -> MatrixEvalError:
    return MatrixEvalError(
        f"no tokenizer found in {source!r}; pass tokenizer=ID_OR_PATH in --model_args (e.g. the base model it was "
        "trained from), or save one into the folder with tokenizer.save_pretrained(...)"
    )


def load_tokenizer(args: ModelArgs) -> PreTrainedTokenizerBase:
    """The model's tokenizer alone (right padding, a pad token), e.g. to check its chat template before any
    weights load; `load_model` loads the same one."""
    return _load_tokenizer(args)


def _load_tokenizer(args: ModelArgs) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    source = args.tokenizer or args.pretrained
    folder = Path(os.path.expanduser(source))
    if folder.is_dir() and not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        raise _no_tokenizer(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=args.revision if args.tokenizer is None else None,
            trust_remote_code=args.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        raise not_loadable("tokenizer", source, err, args.trust_remote_code) from err
    if not tokenizer("the cat sat on the mat .", add_special_tokens=False)["input_ids"]:
        raise _no_tokenizer(source)  # transformers builds an empty tokenizer from a bare config
    if tokenizer.pad_token is None:
        fallback = next((t for t in ("eos_token", "bos_token", "unk_token", "sep_token") if getattr(tokenizer, t)), None)
        if fallback is None:
            raise MatrixEvalError(f"tokenizer of {args.pretrained!r} has no pad, eos, bos, unk or sep token to pad with")
        tokenizer.pad_token = getattr(tokenizer, fallback)
    tokenizer.padding_side = "right"
    return tokenizer


def _describe(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, args: ModelArgs, name: str, *, has_lm_head: bool
) -> LoadedModel:
    config = text_config(unwrap(model).config)
    embeddings = unwrap(model).get_input_embeddings().weight
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        args=args,
        name=name,
        n_params=sum(p.numel() for p in model.parameters()),
        n_params_non_embedding=n_params_non_embedding(model),
        hidden_size=int(config.hidden_size),
        num_hidden_layers=int(config.num_hidden_layers),
        has_lm_head=has_lm_head,
        device=embeddings.device,
        dtype=embeddings.dtype,
        max_positions=_max_positions(config),
        bos_token_id=tokenizer.bos_token_id,
    )


def n_params_non_embedding(model: torch.nn.Module) -> int:
    """Parameters outside the embeddings (Kaplan et al.'s N): all parameters minus the input embedding, the
    output embedding when it is not tied to the input one, and learned position embeddings.

    A position embedding is an ``nn.Embedding`` other than the input one named ``wpe`` or ``*pos*`` (GPT-2's
    ``wpe``, BERT's ``position_embeddings``, OPT's ``embed_positions``); rotary and sinusoidal ones hold no
    parameters. Tied weights count once.
    """
    base = unwrap(model)
    embedding: dict[int, torch.nn.Parameter] = {}
    for module in (base.get_input_embeddings(), base.get_output_embeddings()):
        for p in module.parameters() if module is not None else ():
            embedding[id(p)] = p
    for name, module in base.named_modules():
        leaf = name.rsplit(".", 1)[-1].lower()
        if isinstance(module, torch.nn.Embedding) and (leaf == "wpe" or "pos" in leaf):
            for p in module.parameters():
                embedding[id(p)] = p
    total = {id(p): p for p in model.parameters()}
    return sum(p.numel() for key, p in total.items() if key not in embedding)


def _max_positions(config: PretrainedConfig) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
