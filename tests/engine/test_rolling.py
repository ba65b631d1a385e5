"""Rolling windows (engine.rolling) and the rolling mode of a run: every token scored once, keyed and resumable."""

import json
import random

import pytest
import torch

from matrixeval.data import Document
from matrixeval.engine.rolling import rolling_windows, window_inputs
from matrixeval.errors import MatrixEvalError
from matrixeval.session import Session
from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm

PREFIX = 1


def _cases(n=400, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        length, max_length = rng.randint(0, 120), rng.randint(1, 20)
        yield [rng.randint(2, 60) for _ in range(length)], max_length


def test_every_token_is_predicted_once_from_exactly_the_tokens_before_it():
    for tokens, max_length in _cases():
        windows = window_inputs(rolling_windows(tokens, PREFIX, max_length), max_length)
        assert [t for w in windows for t in w.targets] == tokens
        full = [PREFIX, *tokens]
        end = 0
        for w in windows:
            end += len(w.targets)
            assert 0 < len(w.targets) <= len(w.input_ids) <= max_length
            # the input is the document (after the prefix token) up to the token before the window's last target,
            # as long as max_length allows: the last target is predicted from the max_length tokens before it
            assert list(w.input_ids) == full[max(0, end - max_length) : end]


def test_windows_are_lm_evals():
    utils = pytest.importorskip("lm_eval.utils")
    for tokens, max_length in _cases(seed=1):
        theirs = [utils.make_disjoint_window(p) for p in utils.get_rolling_token_windows(tokens, PREFIX, max_length, 1)]
        assert rolling_windows(tokens, PREFIX, max_length) == [(list(a), list(b)) for a, b in theirs]


def test_a_full_window_has_one_token_of_context():
    tokens = list(range(10, 35))  # 25 tokens, max_length 10: windows of 10, 10 and 5 targets
    pairs = rolling_windows(tokens, PREFIX, 10)
    assert [len(b) for _, b in pairs] == [10, 10, 5]
    assert pairs[0][0] == [PREFIX] and pairs[1][0] == [tokens[9]]
    assert pairs[2][0] == tokens[14:20]  # the short last window keeps lm-eval's longer context


def _hf_loglik(path, ids: list[int]) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0].double()
    return torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()


def _long_docs(n: int) -> list[Document]:
    rng = random.Random(3)
    return [Document(i, " ".join(rng.choice(TINY_TEXTS) for _ in range(6 + i)), {}) for i in range(n)]


def test_rolling_loss_reads_every_token_and_spectra_keep_the_first_window(tiny_root):
    from transformers import AutoTokenizer

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    tok = AutoTokenizer.from_pretrained(path)
    doc = Document(0, TINY_TEXTS[0], {})  # shorter than max_length: one window
    session = Session(f"pretrained={path}", metrics="matrix_entropy,loss", output_path=None, max_length=16,
                      rolling=True)
    record = session.run("one", [doc])[1][0]
    ids = [tok.bos_token_id, *tok(doc.text)["input_ids"]]
    assert record["n_windows"] == 1 and record["n_targets"] == len(ids) - 1  # the first token is scored too
    assert record["loglikelihood"] == pytest.approx(_hf_loglik(path, ids), abs=1e-4)

    docs = _long_docs(3)
    plain = Session(f"pretrained={path}", metrics="matrix_entropy,loss", output_path=None, max_length=16)
    _, flat = plain.run("t", docs)
    entry, rolled = session.run("t", docs)
    for a, b, d in zip(flat, rolled, docs):
        n = len(tok(d.text)["input_ids"])
        assert b["n_targets"] == n > 16 and a["n_targets"] == 15  # truncated: 16 tokens, 15 predicted
        assert b["layers"] == a["layers"]  # spectral metrics: the same first max_length tokens
    assert entry["n_rolling_tokens"] == sum(r["n_targets"] for r in rolled)
    assert "word_perplexity" not in entry  # not asked for (no perplexity)


def test_rolling_is_part_of_the_store_key_and_resumes(tiny_root, tmp_path, capsys):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    docs = _long_docs(4)
    kwargs = dict(metrics="loss,perplexity", output_path=str(tmp_path), max_length=16, batch_size=2)
    plain = Session(f"pretrained={path}", **kwargs).run("t", docs)[0]
    rolled = Session(f"pretrained={path}", rolling=True, **kwargs).run("t", docs)[0]
    assert plain["n_resumed"] == 0 and rolled["n_resumed"] == 0  # another key: nothing reused across modes
    assert rolled["loss"] != pytest.approx(plain["loss"])
    again = Session(f"pretrained={path}", rolling=True, **kwargs).run("t", docs)[0]
    assert again["n_resumed"] == 4 and again["word_perplexity"] == rolled["word_perplexity"]
    stores = list((tmp_path).rglob("config.json"))
    assert len({json.loads(p.read_text()).get("rolling") is not None for p in stores}) == 2


def test_rolling_metric_without_rolling_is_refused(tiny_root):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    session = Session(f"pretrained={path}", metrics="loss,bits_per_byte", output_path=None)
    with pytest.raises(MatrixEvalError, match="bits_per_byte .* rolling mode; pass --rolling"):
        session.run("t", _long_docs(1))


def test_rolling_refuses_documents_with_a_context(tiny_root):
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    session = Session(f"pretrained={path}", metrics="loss", output_path=None, rolling=True)
    with pytest.raises(MatrixEvalError, match="rolling mode scores whole documents"):
        session.run("t", [Document(0, "the cat", {}, context="a dog")])


def test_out_of_memory_in_the_windows_halves_and_gives_the_same_numbers(tiny_root, monkeypatch):
    from matrixeval.engine import measure

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    docs = _long_docs(4)
    kwargs = dict(metrics="loss", output_path=None, max_length=16, rolling=True)
    whole = Session(f"pretrained={path}", batch_size=4, **kwargs).run("t", docs)[1]
    real, sizes = measure.score_windows, []

    def limited(lm, inputs, targets):  # a fake allocator limit: more than 2 windows at once do not fit
        sizes.append(len(inputs))
        if len(inputs) > 2:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(lm, inputs, targets)

    monkeypatch.setattr(measure, "score_windows", limited)
    session = Session(f"pretrained={path}", batch_size="auto", **kwargs)
    halved = session.run("t", docs)[1]
    assert max(sizes) > 2 and session.sizer.size <= 2
    for a, b in zip(whole, halved):
        assert b["loglikelihood"] == pytest.approx(a["loglikelihood"], abs=1e-4) and b["n_targets"] == a["n_targets"]
