"""A tiny randomly initialised LLaVA (CLIP vision + Llama text) saved with its processor, and test images.

``make_tiny_llava(tmp_path)`` returns a directory that ``AutoModelForImageTextToText`` / ``AutoProcessor`` load
offline: a 2-layer CLIP vision tower (32×32 images, 8×8 patches → 16 patches + CLS, hidden 32), a 2-layer
Llama (hidden 48), the LLaVA-1.5 feature choice (layer −2, CLS dropped → 16 image tokens), the word-level
tokenizer of :mod:`tests.tiny_models` plus an ``<image>`` special token, and a PIL-backed CLIP image
processor (torchvision is not needed). Building is deterministic and cached per ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

__all__ = ["IMAGE_SIZE", "NUM_IMAGE_TOKENS", "LLAVA_CHAT_TEMPLATE", "make_images", "make_tiny_llava"]

IMAGE_SIZE, PATCH = 32, 8
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
VISION_HIDDEN, TEXT_HIDDEN = 32, 48
# llava-hf/llava-1.5-7b-hf's chat template (user/assistant turns, images first).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def make_tiny_llava(tmp_path: str | Path, *, seed: int = 0) -> Path:
    """Save the tiny LLaVA and its ``LlavaProcessor`` under ``tmp_path`` and return the directory."""
    out = Path(tmp_path) / f"tiny-llava-seed{seed}"
    if (out / "config.json").is_file():
        return out
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from tests.tiny_models import _CAUSAL_SPECIALS, _word_tokenizer

    tokenizer = _word_tokenizer(_CAUSAL_SPECIALS, template="<s> $A")
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=VISION_HIDDEN,
                              intermediate_size=2 * VISION_HIDDEN, num_hidden_layers=2, num_attention_heads=2)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                         image_seq_length=NUM_IMAGE_TOKENS, vision_feature_layer=-2,
                         vision_feature_select_strategy="default")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def make_images(folder: str | Path, names: list[str], *, seed: int = 0) -> list[Path]:
    """Save one RGB image per name: seeded noise over a diagonal gradient, 40×48 (not square, not symmetric,
    so a 90° rotation changes what the processor crops)."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:48]
    paths = []
    for i, name in enumerate(names):
        gradient = np.stack([x * 5, y * 6, (x + 2 * y) * 2 + 40 * i], axis=-1) % 256
        pixels = np.clip(gradient + rng.normal(0, 60, gradient.shape), 0, 255).astype("uint8")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths
