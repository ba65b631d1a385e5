import pytest
import torch

from matrixeval.errors import MatrixEvalError
from matrixeval.models import ModelArgs, load_model, model_name, parse_model_args, random_init_like

from .helpers import load


def test_packaged_minilm_loads_offline(minilm):
    assert minilm.name == "sentence-transformers__all-MiniLM-L6-v2"
    assert (minilm.hidden_size, minilm.num_hidden_layers, minilm.max_positions) == (384, 6, 512)
    assert not minilm.has_lm_head
    assert minilm.bos_token_id is None
    assert minilm.dtype == torch.float32 and minilm.device == torch.device("cpu")
    assert minilm.tokenizer.pad_token == "[PAD]" and minilm.tokenizer.padding_side == "right"
    assert not minilm.model.training
    assert minilm.n_params == sum(p.numel() for p in minilm.model.parameters()) > 20_000_000


def test_causal_lm_facts(causal_lm):
    tok = causal_lm.tokenizer
    assert causal_lm.has_lm_head and causal_lm.model.get_output_embeddings() is not None
    assert tok.pad_token == tok.eos_token == "</s>" and tok.padding_side == "right"
    assert (causal_lm.hidden_size, causal_lm.num_hidden_layers, causal_lm.max_positions) == (32, 3, 64)
    assert causal_lm.bos_token_id == tok.convert_tokens_to_ids("<s>")
    assert not causal_lm.model.training


def test_encoder_has_no_lm_head(bert_lm):
    assert not bert_lm.has_lm_head
    assert type(bert_lm.model).__name__ == "BertModel"
    assert bert_lm.tokenizer.pad_token == "[PAD]"


def test_name_is_sanitized_lm_eval_style(gpt2_path):
    lm = load(gpt2_path)
    assert lm.name == str(gpt2_path).replace("/", "__")
    assert model_name(ModelArgs("/tmp/x/gpt2")) == "__tmp__x__gpt2"
    assert model_name(ModelArgs("EleutherAI/pythia-70m", revision="step3000")) == "EleutherAI__pythia-70m@step3000"
    assert model_name(ModelArgs("gpt2", adapter="me/lora")) == "gpt2__adapterme__lora"


@pytest.mark.parametrize("pretrained", ["/nonexistent/dir/model", "./no-such-model", "nobody-xyz/no-such-model"])
def test_missing_model_names_it(pretrained):
    with pytest.raises(MatrixEvalError, match=pretrained.replace(".", r"\.")) as info:
        load_model(parse_model_args(f"pretrained={pretrained}"), device="cpu")
    assert "\n" not in str(info.value)


def test_missing_adapter_names_it(gpt2_path, tmp_path):
    missing = tmp_path / "no-adapter"
    with pytest.raises(MatrixEvalError, match="adapter.*no-adapter"):
        load(gpt2_path, adapter=missing)


@pytest.mark.parametrize("device", ["gpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_bad_device(gpt2_path, device):
    with pytest.raises(MatrixEvalError, match="device"):
        load_model(parse_model_args(f"pretrained={gpt2_path}"), device=device)


def test_bfloat16_loads(gpt2_path):
    lm = load(gpt2_path, dtype="bfloat16")
    assert lm.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in lm.model.parameters())
    assert load(gpt2_path).dtype == torch.float32  # auto = the checkpoint's dtype


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_random_init_like_is_deterministic_per_seed(causal_lm):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = random_init_like(causal_lm, seed=7)
    assert torch.equal(torch.rand(3), expected_draw), "random_init_like must not move the global RNG"
    again = random_init_like(causal_lm, seed=7)
    other = random_init_like(causal_lm, seed=8)
    a, b, c, trained = (_params(m.model) for m in (first, again, other, causal_lm))
    assert a.keys() == trained.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert any(not torch.equal(a[k], trained[k]) for k in a if "norm" not in k and "ln" not in k)


def test_random_init_like_keeps_architecture_and_setup(causal_lm):
    rand = random_init_like(causal_lm, seed=0)
    assert type(rand.model) is type(causal_lm.model)
    assert rand.model.config.to_dict() == causal_lm.model.config.to_dict()
    assert rand.tokenizer is causal_lm.tokenizer
    assert (rand.dtype, rand.device, rand.n_params, rand.has_lm_head) == (
        causal_lm.dtype,
        causal_lm.device,
        causal_lm.n_params,
        causal_lm.has_lm_head,
    )
    assert rand.name == f"{causal_lm.name}__random0" and not rand.model.training


def test_random_init_like_keeps_bfloat16(gpt2_path):
    rand = random_init_like(load(gpt2_path, dtype="bf16"), seed=1)
    assert rand.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in rand.model.parameters())


def test_causal_or_encoder_is_decided_from_config():
    from transformers import BertConfig, GPT2Config, LlamaConfig, T5Config

    from matrixeval.models.loading import _is_causal_lm

    assert _is_causal_lm(LlamaConfig(architectures=["LlamaForCausalLM"]), "m")
    assert _is_causal_lm(GPT2Config(), "m")  # no architectures: model type in the causal-LM mapping
    assert _is_causal_lm(BertConfig(is_decoder=True), "m")
    assert not _is_causal_lm(BertConfig(), "m")  # BERT is in the causal mapping too, but is a masked LM
    assert not _is_causal_lm(LlamaConfig(architectures=["LlamaModel"]), "m")  # a headless checkpoint
    with pytest.raises(MatrixEvalError, match="encoder-decoder"):
        _is_causal_lm(T5Config(), "t5-small")


def _hand_counted_non_embedding(family: str, cfg) -> int:
    """Kaplan's N for the tiny models, from the architecture papers' layer shapes (d, layers, heads, MLP width)."""
    d, n_layer = cfg.hidden_size, cfg.num_hidden_layers
    if family == "gpt2":  # per block: ln_1, c_attn (d→3d), attn c_proj, ln_2, c_fc (d→4d), mlp c_proj; then ln_f
        block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
        return n_layer * block + 2 * d
    i = cfg.intermediate_size
    if family == "llama":  # q, k, v (GQA: kv heads × head dim), o, gate/up/down, two RMSNorms; then the final norm
        kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
        return n_layer * (d * d + 2 * d * kv + d * d + 3 * d * i + 2 * d) + d
    # gpt_neox: two LayerNorms, fused qkv, dense, h→4h, 4h→h (all with biases); then final_layer_norm
    return n_layer * (4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * i + i) + (i * d + d)) + 2 * d


@pytest.mark.parametrize("family,tied", [("gpt2", True), ("llama", False), ("gpt_neox", False)])
def test_non_embedding_parameters_by_hand(tiny_root, family, tied):
    from tests.tiny_models import make_tiny_causal_lm

    lm = load_model(parse_model_args(f"pretrained={make_tiny_causal_lm(tiny_root, family)}"), "cpu")
    cfg = lm.model.config
    assert bool(cfg.tie_word_embeddings) is tied
    assert lm.n_params_non_embedding == _hand_counted_non_embedding(family, cfg)
    vocab = cfg.vocab_size * cfg.hidden_size
    positions = cfg.n_positions * cfg.hidden_size if family == "gpt2" else 0  # learned wpe; the others are rotary
    assert lm.n_params == lm.n_params_non_embedding + vocab * (1 if tied else 2) + positions
