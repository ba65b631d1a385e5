"""Parity with lm-evaluation-harness itself: its HFLM.loglikelihood_rolling and its perplexity aggregations, run
in-process on the same tiny causal LM and the same documents (longer than max_length), against `--rolling`."""

import json
import random

import pytest

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.metrics import bits_per_byte, weighted_perplexity  # noqa: E402
from lm_eval.api.task import Task as LmEvalTask  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from matrixeval import evaluate  # noqa: E402
from tests.conftest import shared_file  # noqa: E402
from tests.tiny_models import TINY_TEXTS, make_tiny_causal_lm  # noqa: E402

MAX_LENGTH = 32
WORDS = sorted({w for t in TINY_TEXTS for w in t.split()}) + ["café", "naïve", "Ünïcode"]  # multi-byte: <unk>


def _documents(n: int, seed: int = 0) -> list[str]:
    """Texts of 100-300 words (so 100-300+ tokens of the word-level tokenizer), with line breaks, double spaces
    and multi-byte characters, so words, bytes and tokens all differ."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(100, 300))]
        text = ""
        for w in words:
            text += w + rng.choice([" ", " ", " ", "  ", "\n"])
        docs.append(text.strip())
    return docs


def _lm_eval_logliks(path, texts: list[str]) -> list[float]:
    lm = HFLM(pretrained=str(path), max_length=MAX_LENGTH, batch_size=1, device="cpu", dtype="float32")
    requests = [Instance(request_type="loglikelihood_rolling", doc={"text": t}, arguments=(t,), idx=i)
                for i, t in enumerate(texts)]
    return lm.loglikelihood_rolling(requests, disable_tqdm=True)


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # llama's tokenizer adds BOS: lm-eval then predicts it too
def test_rolling_loglikelihood_and_perplexities_equal_lm_eval(tiny_root, tmp_path, family):
    path = make_tiny_causal_lm(tiny_root, family)
    texts = _documents(5)
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = evaluate(f"pretrained={path},dtype=float32", f"docs={data}", rolling=True, max_length=MAX_LENGTH,
                   batch_size=3, output_path=str(tmp_path / "out"), log_samples=True,
                   metrics="matrix_entropy,loss,perplexity,word_perplexity,byte_perplexity,bits_per_byte")
    samples = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_docs_*.jsonl")).open()]
    samples.sort(key=lambda r: r["doc_id"])

    theirs = _lm_eval_logliks(path, texts)
    ours = [r["loglikelihood"] for r in samples]
    assert len(ours) == len(theirs) == len(texts)
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, abs=1e-4)
    assert all(r["n_windows"] > 3 for r in samples)  # documents much longer than max_length

    words = [(ll, LmEvalTask.count_words(t)) for ll, t in zip(theirs, texts)]
    n_bytes = [(ll, LmEvalTask.count_bytes(t)) for ll, t in zip(theirs, texts)]
    entry = out["results"]["docs"]
    assert entry["word_perplexity"] == pytest.approx(weighted_perplexity(words), rel=1e-6)
    assert entry["byte_perplexity"] == pytest.approx(weighted_perplexity(n_bytes), rel=1e-6)
    assert entry["bits_per_byte"] == pytest.approx(bits_per_byte(n_bytes), rel=1e-6)
    assert entry["rolling"] is True and out["higher_is_better"]["bits_per_byte"] is False
    # the spectral metrics keep their truncation: the first max_length tokens
    layer = samples[0]["layers"][str(entry["primary_layer"])]
    assert layer["n_tokens"] <= MAX_LENGTH and entry["n_truncated"] == len(texts)


def test_wikitext_recipe_scores_and_counts_as_lm_eval(tiny_root, tmp_path):
    """The wikitext recipe on the shared test.txt: lm-eval's detokeniser gives the scored text, lm-eval's own
    process_results the word and byte counts (of the page before detokenisation), and the perplexities agree."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer

    from matrixeval.data import load_task, parse_task_specs

    test_txt = shared_file("wikitext-2/test.txt")
    spec = parse_task_specs(f"wikitext={test_txt}")[0]
    task = load_task(spec, txt_split="wikitext", limit=2)
    pages = [d.record["text"] for d in task.documents]
    assert [d.text for d in task.documents] == [wikitext_detokenizer({"page": p}) for p in pages]
    path = make_tiny_causal_lm(tiny_root, "gpt2")
    out = evaluate(f"pretrained={path},dtype=float32", f"wikitext={test_txt}", txt_split="wikitext", limit=2,
                   max_length=MAX_LENGTH, batch_size=4, output_path=None, metrics="perplexity")
    entry = out["results"]["wikitext"]
    assert entry["rolling"] is True  # the recipe asks for it; no --rolling given
    theirs = _lm_eval_logliks(path, [d.text for d in task.documents])
    per_doc = [process_results({"page": p}, [ll]) for p, ll in zip(pages, theirs)]
    assert entry["n_words"] == sum(r["word_perplexity"][1] for r in per_doc)
    assert entry["n_bytes"] == sum(r["byte_perplexity"][1] for r in per_doc)
    assert entry["loglikelihood_sum"] == pytest.approx(sum(theirs), abs=2e-4)
    assert entry["word_perplexity"] == pytest.approx(weighted_perplexity([r["word_perplexity"] for r in per_doc]),
                                                     rel=1e-6)
    assert entry["byte_perplexity"] == pytest.approx(weighted_perplexity([r["byte_perplexity"] for r in per_doc]),
                                                     rel=1e-6)
    assert entry["bits_per_byte"] == pytest.approx(bits_per_byte([r["bits_per_byte"] for r in per_doc]), rel=1e-6)
