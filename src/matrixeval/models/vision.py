"""Vision-language models (vision encoder → connector → LLM): load one, find its three parts, capture states.

The connector (projector) is the one module every such model has between the two towers, so it is where
the states are taken: its *input* is exactly what the vision side hands over (for LLaVA-1.5 the layer −2
features without CLS), its *output* is what the language model receives in place of the image tokens.
Both come from hooks, so any model whose parts can be named with ``vision_module=`` / ``projector_module=``
(/ ``language_module=``) in ``model_args`` works without code. The language model's final hidden states
(``last_hidden_state``, after the final norm) come from a hook on the language module.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..errors import MatrixEvalError
from .args import ModelArgs
from .loading import (dtype_key, load_config, model_name, n_params_non_embedding, not_loadable, ready, resolve_device,
                      text_config, unwrap)

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["MODULE_KEYS", "Capture", "Prompts", "VisionLanguageModel", "build_prompts", "capture", "content_mask",
           "load_vision_language_model"]

MODULE_KEYS = ("vision_module", "projector_module", "language_module")
# Connector names used by transformers' vision-language models, tried when projector_module= is not given.
_PROJECTOR_NAMES = ("multi_modal_projector", "mm_projector", "multimodal_projector", "connector", "merger")
_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModel")
IMAGE_TOKEN = "<image>"


@dataclass
class VisionLanguageModel:
    """A vision-language model in eval mode, its processor and the three parts the states come from."""

    model: torch.nn.Module
    processor: Any
    args: ModelArgs
    name: str
    vision: torch.nn.Module
    projector: torch.nn.Module
    language: torch.nn.Module
    module_names: dict[str, str]  # "vision" / "projector" / "language" -> dotted path in the model
    image_token: str
    image_token_id: int
    n_params: int
    n_params_non_embedding: int
    device: torch.device
    dtype: torch.dtype
    max_positions: int | None
    bos_token_id: int | None


@dataclass(frozen=True)
class Prompts:
    """The three inputs of one sample: image alone, text alone, image followed by text."""

    image_only: str
    text_only: str
    image_text: str
    format: str  # "chat_template" or "llava_plain"


@dataclass
class Capture:
    """What one forward pass handed over. ``hidden`` is the LLM's final layer (1, N, d); ``image_mask`` (1, N)
    marks the image-token positions. ``projector_input``/``projector_output`` are (1, n, d_in)/(1, n, d) and
    None when the input had no image; ``projector_output`` is as the connector computed it (before any reversal).
    """

    hidden: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    image_mask: torch.Tensor
    projector_input: torch.Tensor | None
    projector_output: torch.Tensor | None
    offset_mapping: torch.Tensor | None = None  # (1, N, 2) character spans in the processed text, when asked


def load_vision_language_model(args: ModelArgs, device: str | None = None) -> VisionLanguageModel:
    """Load ``args.pretrained`` with its processor and locate the vision encoder, connector and language model.

    Parts come from ``vision_module=``, ``projector_module=``, ``language_module=`` in ``args.extra`` (dotted paths
    as in ``model.named_modules()``), else from the names transformers' LLaVA-style models use. Any other extra
    key is an error (a misspelt module key must not be silently ignored).
    """
    unknown = sorted(set(args.extra) - set(MODULE_KEYS))
    if unknown:
        raise MatrixEvalError(
            f"unknown model_args key(s) {', '.join(unknown)} for a vision-language model; "
            f"valid extra keys: {', '.join(MODULE_KEYS)}"
        )
    target = resolve_device(device) if args.device_map is None else None
    config = load_config(args)
    model = ready(_load_weights(args, config), args, target)
    processor = _load_processor(args)
    inner = unwrap(model)
    name = model_name(args)
    vision = _part(inner, args, "vision_module", _default_vision, name)
    projector = _part(inner, args, "projector_module", _default_projector, name)
    language = _part(inner, args, "language_module", _default_language, name)
    paths = {id(m): n for n, m in inner.named_modules()}
    token, token_id = _image_token(inner, processor, name)
    language_config = text_config(inner.config)
    embeddings = inner.get_input_embeddings().weight
    return VisionLanguageModel(
        model=model,
        processor=processor,
        args=args,
        name=name,
        vision=vision,
        projector=projector,
        language=language,
        module_names={k: paths.get(id(m), "?") for k, m in (("vision", vision), ("projector", projector),
                                                               ("language", language))},
        image_token=token,
        image_token_id=token_id,
        n_params=sum(p.numel() for p in model.parameters()),
        n_params_non_embedding=n_params_non_embedding(model),
        device=embeddings.device,
        dtype=embeddings.dtype,
        max_positions=getattr(language_config, "max_position_embeddings", None),
        bos_token_id=processor.tokenizer.bos_token_id,
    )


def build_prompts(vlm: VisionLanguageModel, instruction: str, response: str) -> Prompts:
    """The sample's three prompts, from the processor's chat template when it has one.

    With a template: a user turn (image and/or instruction) and an assistant turn (response); the image-only
    input is a user turn holding just the image. Without one, LLaVA-1.5's plain format:
    ``"USER: <image>\\n{instruction} ASSISTANT: {response}"``, ``"USER: {instruction} ASSISTANT: {response}"``
    and ``"<image>"`` alone. The language model is causal, so the image tokens' states depend only on what
    precedes them (BOS and, with a template, the user prefix).
    """
    if getattr(vlm.processor, "chat_template", None):
        def chat(image: bool, text: bool) -> str:
            user = ([{"type": "image"}] if image else []) + ([{"type": "text", "text": instruction}] if text else [])
            turns = [{"role": "user", "content": user}]
            if text:
                turns.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
            return vlm.processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)

        return Prompts(chat(True, False), chat(False, True), chat(True, True), "chat_template")
    token = vlm.image_token
    return Prompts(
        image_only=token,
        text_only=f"USER: {instruction} ASSISTANT: {response}",
        image_text=f"USER: {token}\n{instruction} ASSISTANT: {response}",
        format="llava_plain",
    )


def capture(
    vlm: VisionLanguageModel, text: str, image: Image | None = None, *, reverse_after_connector: bool = False,
    offsets: bool = False,
) -> Capture:
    """One forward pass of ``text`` (and ``image``, which must match the image tokens in ``text``).

    ``reverse_after_connector`` reverses the order of the projected image tokens before they enter the LLM
    (a hook returning the connector's output flipped along its token dimension, the second-to-last one).
    ``offsets`` also returns each token's character span in the processed text (see :func:`content_mask`).
    """
    kwargs = {"text": text, "return_tensors": "pt"}
    if image is not None:
        kwargs["images"] = image
    if offsets:
        kwargs["return_offsets_mapping"] = True
    try:
        enc = vlm.processor(**kwargs)
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        hint = "; measure the whole prompt with --include_template" if offsets else ""
        raise MatrixEvalError(f"the processor of {vlm.name} failed on a sample ({first_line(err)}){hint}") from None
    offset_mapping = enc.pop("offset_mapping", None) if offsets else None
    if offsets and not isinstance(offset_mapping, torch.Tensor):
        raise MatrixEvalError(
            f"the processor of {vlm.name} gives no token offsets (a slow tokenizer?), so the instruction and "
            "response tokens cannot be told from the template's; measure the whole prompt with --include_template"
        )
    input_ids = enc["input_ids"]
    if vlm.max_positions and input_ids.shape[1] > vlm.max_positions:
        raise MatrixEvalError(
            f"a sample has {input_ids.shape[1]} tokens, more than the {vlm.max_positions} positions of {vlm.name}; "
            "shorten the instruction/response"
        )
    inputs = {k: (v.to(vlm.device, vlm.dtype) if v.is_floating_point() else v.to(vlm.device)) for k, v in enc.items()
              if isinstance(v, torch.Tensor)}
    store: dict[str, list[torch.Tensor]] = {"in": [], "out": [], "hidden": [], "vision": []}
    with torch.inference_mode(), _hooks(vlm, store, reverse_after_connector):
        vlm.model(**inputs, **_call_options(vlm.model))
    if image is not None and not store["vision"]:
        raise MatrixEvalError(
            f"vision module {vlm.module_names['vision']!r} of {vlm.name} did not run on an image input; "
            "name the vision encoder with vision_module=..."
        )
    if len(store["hidden"]) != 1:
        raise MatrixEvalError(
            f"language module {vlm.module_names['language']!r} of {vlm.name} ran {len(store['hidden'])} times in "
            "one forward pass; name the language model with language_module=..."
        )
    image_mask = input_ids == vlm.image_token_id
    projected = _tokens(store["out"])
    if image is not None and (projected is None or projected.shape[1] != int(image_mask.sum())):
        got = "no output" if projected is None else f"{projected.shape[1]} tokens"
        raise MatrixEvalError(
            f"connector {vlm.module_names['projector']!r} of {vlm.name} gave {got} for {int(image_mask.sum())} "
            f"image tokens (id {vlm.image_token_id}); name the module whose output replaces the image tokens "
            "with projector_module=..."
        )
    return Capture(
        hidden=store["hidden"][0],
        input_ids=input_ids,
        attention_mask=enc.get("attention_mask", torch.ones_like(input_ids)),
        image_mask=image_mask,
        projector_input=_tokens(store["in"]),
        projector_output=projected,
        offset_mapping=offset_mapping,
    )


def content_mask(vlm: VisionLanguageModel, prompt: str, cap: Capture, pieces: Sequence[str]) -> torch.Tensor:
    """(1, N) True at the tokens of ``cap`` that hold a character of one of ``pieces`` (e.g. the instruction and
    the response), found in this order in ``prompt``; template, BOS and image tokens are False.

    ``cap`` must come from ``capture(vlm, prompt, ..., offsets=True)``. The processor expands each image
    placeholder into one token per image feature before tokenising, so offsets refer to that expanded text;
    it is rebuilt here and checked against the image tokens' offsets, so a processor that expands differently
    gives an error, never a wrong mask.
    """
    if cap.offset_mapping is None:
        raise ValueError("content_mask needs a capture taken with offsets=True")
    n_placeholders = prompt.count(vlm.image_token)
    n_image_tokens = int(cap.image_mask.sum())
    expanded = prompt
    if n_placeholders:
        expanded = prompt.replace(vlm.image_token, vlm.image_token * (n_image_tokens // n_placeholders))
    starts, ends = cap.offset_mapping[0, :, 0], cap.offset_mapping[0, :, 1]
    image_spans = {expanded[int(s):int(e)] for s, e in zip(starts[cap.image_mask[0]], ends[cap.image_mask[0]])}
    if n_image_tokens % max(n_placeholders, 1) or image_spans - {vlm.image_token}:
        raise MatrixEvalError(
            f"the processor of {vlm.name} expands its image placeholder in a way matrixeval cannot map to "
            "characters, so the instruction and response tokens cannot be found; measure the whole prompt with "
            "--include_template"
        )
    mask = torch.zeros_like(starts, dtype=torch.bool)
    at = 0
    for piece in pieces:
        found = expanded.find(piece, at)
        if found < 0:
            raise MatrixEvalError(
                f"the prompt format of {vlm.name} does not hold the text {piece[:40]!r} verbatim, so its tokens "
                "cannot be found; measure the whole prompt with --include_template"
            )
        at = found + len(piece)
        mask |= (starts < at) & (ends > found) & (ends > starts)
    return (mask & ~cap.image_mask[0]).unsqueeze(0)


@contextmanager
def _hooks(vlm: VisionLanguageModel, store: dict[str, list[torch.Tensor]], reverse: bool) -> Iterator[None]:
    def before_projector(module, args, kwargs):
        store["in"].append(args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor)))

    def after_projector(module, args, output):
        if not isinstance(output, torch.Tensor):
            raise MatrixEvalError(
                f"connector {vlm.module_names['projector']!r} of {vlm.name} returns a {type(output).__name__}, not a "
                "tensor of image tokens; name the module that does with projector_module=..."
            )
        store["out"].append(output)
        return output.flip(-2) if reverse else None

    def after_language(module, args, output):
        hidden = getattr(output, "last_hidden_state", None)
        store["hidden"].append(hidden if hidden is not None else output[0] if isinstance(output, (tuple, list))
                               else output)

    def after_vision(module, args, output):
        store["vision"].append(torch.empty(0))  # only that it ran: H1 is what the connector receives

    handles = [
        vlm.vision.register_forward_hook(after_vision),
        vlm.projector.register_forward_pre_hook(before_projector, with_kwargs=True),
        vlm.projector.register_forward_hook(after_projector),
        vlm.language.register_forward_hook(after_language),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _tokens(chunks: list[torch.Tensor]) -> torch.Tensor | None:
    """Captured connector tensors as one (1, n, d) matrix of image tokens (we feed one image per pass)."""
    if not chunks:
        return None
    return torch.cat([c.reshape(-1, c.shape[-1]) for c in chunks]).unsqueeze(0)


def _call_options(model: torch.nn.Module) -> dict[str, Any]:
    """No KV cache, and logits for the last position only, where the model's forward takes these options."""
    params = inspect.signature(model.forward).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    options: dict[str, Any] = {}
    if "use_cache" in params or open_kwargs:
        options["use_cache"] = False
    if "logits_to_keep" in params:
        options["logits_to_keep"] = 1
    return options


def _load_weights(args: ModelArgs, config) -> torch.nn.Module:
    import transformers

    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    kwargs = {dtype_key(): dtype, "revision": args.revision, "trust_remote_code": args.trust_remote_code}
    if args.device_map is not None:
        kwargs["device_map"] = args.device_map
    for class_name in _AUTO_CLASSES:
        auto = getattr(transformers, class_name, None)
        if auto is None:
            continue
        try:
            return auto.from_pretrained(args.pretrained, **kwargs)
        except ValueError as err:
            if "Unrecognized configuration class" in str(err):
                continue  # this Auto class does not know the architecture: try the next one
            raise not_loadable("model", args.pretrained, err, args.trust_remote_code) from err
        except OSError as err:
            raise not_loadable("model", args.pretrained, err, args.trust_remote_code) from err
    raise MatrixEvalError(
        f"model {args.pretrained!r} ({getattr(config, 'model_type', '?')}) loads with none of "
        f"{', '.join(_AUTO_CLASSES)}; give a transformers vision-language checkpoint (or trust_remote_code=true)"
    )


def _load_processor(args: ModelArgs):
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(
            args.pretrained, revision=args.revision, trust_remote_code=args.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise not_loadable("processor", args.pretrained, err, args.trust_remote_code) from err
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise MatrixEvalError(
            f"the processor of {args.pretrained!r} is a {type(processor).__name__} without an image processor and "
            "a tokenizer; save the model's multimodal processor (processor.save_pretrained) next to it"
        )
    return processor


def _part(model: torch.nn.Module, args: ModelArgs, key: str, default, name: str) -> torch.nn.Module:
    path = args.extra.get(key)
    if path is None:
        module = default(model)
        if module is None:
            raise MatrixEvalError(
                f"cannot find the {key.split('_')[0]} module of {name} ({type(model).__name__}); "
                f"name it with {key}=DOTTED.PATH in model_args (see print(model) for the names)"
            )
        return module
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=3)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        top = ", ".join(n for n in names if "." not in n)
        raise MatrixEvalError(
            f"{key}={path!r}: {name} has no such module; {hint}top-level modules: {top}"
        ) from None


def _default_vision(model: torch.nn.Module) -> torch.nn.Module | None:
    encoder = model.get_encoder("image") if hasattr(model, "get_encoder") else None
    return encoder if encoder is not None and encoder is not model else None


def _default_projector(model: torch.nn.Module) -> torch.nn.Module | None:
    found = [(n.count("."), n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in _PROJECTOR_NAMES]
    return min(found, key=lambda f: f[:2])[2] if found else None


def _default_language(model: torch.nn.Module) -> torch.nn.Module | None:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return decoder if decoder is not None and decoder is not model else None


def _image_token(model: torch.nn.Module, processor, name: str) -> tuple[str, int]:
    config = model.config
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        token_id = getattr(config, "image_token_index", None)
    if token_id is None:
        token_id = getattr(processor, "image_token_id", None)
    token = getattr(processor, "image_token", None) or IMAGE_TOKEN
    if token_id is None:
        raise MatrixEvalError(
            f"{name} names no image token id (config.image_token_id / processor.image_token_id); "
            "its image-token positions cannot be found"
        )
    return token, int(token_id)


def first_line(err: Exception) -> str:
    """``Type: first line of the message``, for a one-line error that names what failed inside a library."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
