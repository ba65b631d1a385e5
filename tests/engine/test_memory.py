"""What a batch keeps alive: only the requested layers are captured, each layer's hidden states are freed as
soon as its spectra are read, and nothing of a batch survives it (checked structurally, with weak references)."""

import weakref

import pytest
import torch

from matrixeval.engine import measure
from matrixeval.engine.batching import encode
from matrixeval.engine.measure import MeasureConfig, measure_batch
from matrixeval.models import forward, load_model, parse_model_args, resolve_layers
from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tiny_root):
    return load_model(parse_model_args(f"pretrained={make_tiny_causal_lm(tiny_root, request.param)}"), "cpu")


def _items(lm, n=4):
    from matrixeval.data import Document

    docs = [Document(i, " ".join(TINY_TEXTS[i : i + 1 + i % 3]), {}) for i in range(n)]
    return encode(lm.tokenizer, docs, 64)


def test_captured_states_are_the_requested_layers_and_own_only_their_storage(lm):
    from matrixeval.engine.batching import collate

    ids, attention, _ = collate(_items(lm), lm.tokenizer.pad_token_id, lm.device)
    for layers in ([lm.num_hidden_layers], resolve_layers("all", lm.num_hidden_layers), [0, 2]):
        out = forward(lm, ids, attention, layers, need_loss=True)
        assert sorted(out.hidden) == sorted(layers)
        for h in out.hidden.values():
            assert h.shape == (*ids.shape, lm.hidden_size)
            # not a view into a larger buffer (all layers, a fused projection): it keeps (B, N, d) alive, no more
            assert h.untyped_storage().nbytes() == h.numel() * h.element_size()


@pytest.mark.parametrize("reference", [False, True])
def test_each_layer_is_freed_once_read_and_nothing_survives_the_batch(lm, monkeypatch, reference):
    layers = tuple(resolve_layers("all", lm.num_hidden_layers))
    cfg = MeasureConfig(layers=layers, need_loss=True, exclude_bos=False, special_ids=frozenset())
    captured: list[weakref.ref] = []
    alive_at_call: list[int] = []
    real_forward, real_spectral = measure.forward, measure.spectral_metrics

    def spy_forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        captured.extend(weakref.ref(h) for h in out.hidden.values())
        return out

    def spy_spectral(hidden, mask, **kwargs):
        alive_at_call.append(sum(r() is not None for r in captured))
        return real_spectral(hidden, mask, **kwargs)

    monkeypatch.setattr(measure, "forward", spy_forward)
    monkeypatch.setattr(measure, "spectral_metrics", spy_spectral)
    ref_lm = None
    if reference:
        from matrixeval.models import random_init_like

        ref_lm = random_init_like(lm, 0)
    records = measure_batch(lm, _items(lm), cfg, ref_lm)
    n = len(layers)
    # while layer j's spectra are computed, only it and the layers not yet read are alive (never the whole
    # stack plus copies); the reference model's forward starts after every trained-model state is gone
    expected = list(range(n, 0, -1)) * (2 if reference else 1)
    assert alive_at_call == expected
    assert all(r() is None for r in captured), "a hidden state outlived its batch"
    assert len(records) == 4 and all(str(layer) in records[0]["layers"] for layer in layers)


def test_metric_core_does_not_modify_its_input():
    from matrixeval import spectral_metrics

    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        h = torch.randn(2, 9, 6).to(dtype)
        mask = torch.ones(2, 9, dtype=torch.bool)
        mask[1, 6:] = False
        before = h.clone()
        spectral_metrics(h, mask)
        assert torch.equal(h, before), dtype
