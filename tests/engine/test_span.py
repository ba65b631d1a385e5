"""Context tokens condition the model but enter no metric: checked against HF forwards directly."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.data import Document
from matrixeval.session import Session
from tests.metrics import reference as ref
from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm


def test_context_is_read_but_not_measured(tiny_root):
    path = make_tiny_causal_lm(tiny_root, "llama")
    docs = [Document(i, TINY_TEXTS[i], {}, context=TINY_TEXTS[i + 3]) for i in range(4)]
    session = Session(f"pretrained={path}", metrics="matrix_entropy,loss", output_path=None)
    entry, records = session.run("span", docs)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    for doc, record in zip(docs, records):
        ctx = tok(doc.context)["input_ids"]
        ids = ctx + tok(doc.text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True)
        span = out.hidden_states[-1][0, len(ctx):]
        layer = record["layers"][str(session.layers[-1])]
        assert layer["n_tokens"] == len(ids) - len(ctx)  # exactly the text's tokens enter the matrix
        assert layer["matrix_entropy"] == pytest.approx(ref.matrix_entropy(span), abs=1e-5)
        logp = torch.log_softmax(out.logits[0, :-1].double(), -1)
        nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        assert record["nll_sum"] == pytest.approx(nll[len(ctx) - 1:].sum().item(), abs=1e-4)
        assert record["n_targets"] == len(ids) - len(ctx)


def test_changing_only_the_context_keeps_the_token_count(tiny_root):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    session = Session(f"pretrained={path}", metrics="matrix_entropy", output_path=None)
    a = session.run("a", [Document(0, TINY_TEXTS[0], {}, context=TINY_TEXTS[1])])[1][0]
    b = session.run("b", [Document(0, TINY_TEXTS[0], {}, context=TINY_TEXTS[5] + " " + TINY_TEXTS[6])])[1][0]
    layer = str(session.layers[-1])
    assert a["layers"][layer]["n_tokens"] == b["layers"][layer]["n_tokens"]
    assert a["layers"][layer]["matrix_entropy"] != b["layers"][layer]["matrix_entropy"]


def test_log_likelihood_only_runs_accept_one_token_texts(tiny_root):
    from matrixeval import MatrixEvalError

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    session = Session(f"pretrained={path}", metrics="matrix_entropy,loss", output_path=None)
    docs = [Document(i, word, {}, context=TINY_TEXTS[0]) for i, word in enumerate(["cat", "dog"])]
    with pytest.raises(MatrixEvalError, match="zero valid samples"):
        session.run("choices", docs)
    entry, records = session.run("choices", docs, require_spectral=False)
    assert entry["n_samples"] == 0 and [r["n_targets"] for r in records] == [1, 1]
    assert all(r["nll_sum"] > 0 for r in records)
