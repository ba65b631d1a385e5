import pytest
import torch

from matrixeval.errors import MatrixEvalError
from matrixeval.models import forward, random_init_like, resolve_layers

from .helpers import hook_count, load, right_padded_batch


def _reference(lm, batch):
    """Hidden states and logits the independent way: HF's own ``output_hidden_states=True``."""
    with torch.inference_mode():
        return lm.model(**batch, output_hidden_states=True)


@pytest.mark.parametrize("need_loss", [False, True])
def test_hooks_equal_output_hidden_states(any_lm, need_loss):
    batch = right_padded_batch(any_lm)
    layers = resolve_layers("all", any_lm.num_hidden_layers)
    out = forward(any_lm, **batch, layers=layers, need_loss=need_loss)
    ref = _reference(any_lm, batch)
    assert sorted(out.hidden) == layers == list(range(len(ref.hidden_states)))
    for i in layers:
        assert out.hidden[i].shape == (*batch["input_ids"].shape, any_lm.hidden_size)
        assert torch.equal(out.hidden[i], ref.hidden_states[i]), f"layer {i} differs from output_hidden_states"


def test_last_layer_is_last_hidden_state(any_lm):
    batch = right_padded_batch(any_lm)
    out = forward(any_lm, **batch, layers=[-1], need_loss=False)
    with torch.inference_mode():
        base = any_lm.model.base_model(**batch)
    assert list(out.hidden) == [any_lm.num_hidden_layers]
    assert torch.equal(out.hidden[any_lm.num_hidden_layers], base.last_hidden_state)


def test_only_requested_layers_are_kept_and_hooks_removed(any_lm):
    batch = right_padded_batch(any_lm)
    before = hook_count(any_lm.model)
    out = forward(any_lm, **batch, layers=[1], need_loss=True)
    assert list(out.hidden) == [1]
    assert hook_count(any_lm.model) == before
    assert forward(any_lm, **batch, layers=[], need_loss=False).hidden == {}


def test_hooks_removed_when_forward_fails(causal_lm):
    batch = right_padded_batch(causal_lm)
    before = hook_count(causal_lm.model)
    bad_ids = batch["input_ids"].clone()
    bad_ids[0, 1] = 10 * len(causal_lm.tokenizer)  # out of the vocabulary: the embedding lookup fails
    with pytest.raises(IndexError):
        forward(causal_lm, bad_ids, batch["attention_mask"], [0, 1, 3], need_loss=True)
    assert hook_count(causal_lm.model) == before


def test_loss_equals_labels_loss(causal_lm):
    for text in ("the cat sat on the mat .", "why do numbers like seven sing ?"):
        ids = causal_lm.tokenizer(text, return_tensors="pt")["input_ids"]
        mask = torch.ones_like(ids)
        out = forward(causal_lm, ids, mask, [], need_loss=True)
        with torch.inference_mode():
            expected = causal_lm.model(input_ids=ids, attention_mask=mask, labels=ids).loss
        mean = out.token_nll[out.target_mask].mean()
        assert out.token_nll.dtype == torch.float32
        assert abs(mean.item() - expected.item()) <= 1e-5


def test_padded_batch_nll_and_targets(causal_lm):
    batch = right_padded_batch(causal_lm)
    out = forward(causal_lm, **batch, layers=[-1], need_loss=True)
    mask = batch["attention_mask"].bool()
    lengths = mask.sum(1)
    assert out.target_mask.shape == out.token_nll.shape == mask.shape
    assert not out.target_mask[:, 0].any()
    assert torch.equal(out.target_mask.sum(1), lengths - 1)
    assert not (out.target_mask & ~mask).any()
    assert (out.token_nll[~out.target_mask] == 0).all()
    assert (out.token_nll[out.target_mask] > 0).all()
    for row, n in enumerate(lengths.tolist()):  # each row's NLL equals that text run alone, without padding
        ids = batch["input_ids"][row : row + 1, :n]
        alone = forward(causal_lm, ids, torch.ones_like(ids), [], need_loss=True)
        torch.testing.assert_close(out.token_nll[row, :n], alone.token_nll[0], atol=1e-5, rtol=1e-5)


def test_no_logits_without_need_loss(causal_lm):
    calls = []
    handle = causal_lm.model.get_output_embeddings().register_forward_hook(lambda *_: calls.append(1))
    try:
        out = forward(causal_lm, **right_padded_batch(causal_lm), layers=[1], need_loss=False)
        assert out.token_nll is None and out.target_mask is None and not calls
        forward(causal_lm, **right_padded_batch(causal_lm), layers=[1], need_loss=True)
        assert calls
    finally:
        handle.remove()


def test_encoder_has_no_loss(bert_lm):
    out = forward(bert_lm, **right_padded_batch(bert_lm), layers=[0, 3], need_loss=True)
    assert out.token_nll is None and out.target_mask is None and sorted(out.hidden) == [0, 3]


def test_packaged_minilm_layers_equal_output_hidden_states(minilm):
    batch = right_padded_batch(minilm, ["Matrix entropy measures compression.", "A short one."])
    out = forward(minilm, **batch, layers=resolve_layers("0,3,last", minilm.num_hidden_layers), need_loss=False)
    ref = _reference(minilm, batch)
    for i in (0, 3, 6):
        assert torch.equal(out.hidden[i], ref.hidden_states[i])
    assert torch.equal(out.hidden[6], ref.last_hidden_state)


def test_bfloat16_forward(gpt2_path):
    lm = load(gpt2_path, dtype="bfloat16")
    out = forward(lm, **right_padded_batch(lm), layers=[0, 3], need_loss=True)
    assert out.hidden[3].dtype == torch.bfloat16
    assert out.token_nll.dtype == torch.float32 and torch.isfinite(out.token_nll).all()


def test_random_init_changes_hidden_states(causal_lm):
    batch = right_padded_batch(causal_lm)
    trained = forward(causal_lm, **batch, layers=[-1], need_loss=False).hidden[3]
    rand = forward(random_init_like(causal_lm, seed=3), **batch, layers=[-1], need_loss=False).hidden[3]
    assert not torch.allclose(trained, rand)


@pytest.mark.parametrize("family_path", ["gpt2_path", "llama_path"])
def test_lora_adapter_loads_and_changes_outputs(family_path, request, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = request.getfixturevalue(family_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(path)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(base, lora).save_pretrained(tmp_path / "lora")

    plain = load(path)
    adapted = load(path, adapter=tmp_path / "lora")
    assert adapted.n_params > plain.n_params and adapted.name.endswith("lora")
    batch = right_padded_batch(adapted)
    out = forward(adapted, **batch, layers=[1, 3], need_loss=True)
    ref = _reference(adapted, batch)
    for i in (1, 3):
        assert torch.equal(out.hidden[i], ref.hidden_states[i])
        assert not torch.allclose(out.hidden[i], forward(plain, **batch, layers=[i], need_loss=False).hidden[i])
    ids = batch["input_ids"][:1, : int(batch["attention_mask"][0].sum())]
    single = forward(adapted, ids, torch.ones_like(ids), [], need_loss=True)
    with torch.inference_mode():
        expected = adapted.model(input_ids=ids, labels=ids).loss
    assert abs(single.token_nll[single.target_mask].mean().item() - expected.item()) <= 1e-5


def test_bad_batches_are_rejected(causal_lm):
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(MatrixEvalError, match=r"attention_mask shape \(2, 4\)"):
        forward(causal_lm, ids, torch.ones(2, 4, dtype=torch.long), [1], need_loss=False)
    with pytest.raises(MatrixEvalError, match="integer"):
        forward(causal_lm, ids.float(), torch.ones(2, 5), [1], need_loss=False)
    long_ids = torch.ones(1, causal_lm.max_positions + 1, dtype=torch.long)
    with pytest.raises(MatrixEvalError, match="65 tokens exceed the 64 positions"):
        forward(causal_lm, long_ids, torch.ones_like(long_ids), [1], need_loss=False)
    with pytest.raises(MatrixEvalError, match="out of range"):
        forward(causal_lm, ids, torch.ones_like(ids), [9], need_loss=False)


class _KeywordBlock(torch.nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, *, hidden_states):
        return (hidden_states * self.scale,)


class _KeywordBackbone(torch.nn.Module):
    """Blocks receive the hidden states as a keyword, as some transformers 5 models do."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([_KeywordBlock(2.0), _KeywordBlock(3.0)])

    def forward(self, x):
        for block in self.layers:
            x = block(hidden_states=x)[0]
        return (x + 1,)


def test_capture_handles_keyword_hidden_states():
    from matrixeval.models.forward import _capture

    backbone, x, into = _KeywordBackbone(), torch.ones(1, 2, 4), {}
    with _capture(backbone, [0, 1, 2], 2, into):
        backbone(x)
    assert torch.equal(into[0], x) and torch.equal(into[1], 2 * x) and torch.equal(into[2], 6 * x + 1)
    assert hook_count(backbone) == 0
