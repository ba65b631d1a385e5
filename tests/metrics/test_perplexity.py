"""lm-eval's document perplexities (metrics.perplexity), by hand and, where installed, against lm-eval's own."""

import math

import pytest

from matrixeval.metrics import bits_per_byte, byte_perplexity, count_bytes, count_words, word_perplexity


def test_counts_as_lm_eval_counts():
    assert count_words("a b  c\nd") == 4
    assert count_words(" a b ") == 4  # re.split keeps the empty ends, as lm-eval's count_words
    assert count_bytes("café") == 5  # UTF-8 bytes, not characters


def test_ratios_of_sums_not_means_of_ratios():
    logliks, words, n_bytes = [-10.0, -30.0], [5, 5], [20, 60]
    assert word_perplexity(logliks, words) == pytest.approx(math.exp(40 / 10))
    assert byte_perplexity(logliks, n_bytes) == pytest.approx(math.exp(40 / 80))
    assert bits_per_byte(logliks, n_bytes) == pytest.approx(40 / 80 / math.log(2))
    assert math.log2(byte_perplexity(logliks, n_bytes)) == pytest.approx(bits_per_byte(logliks, n_bytes))
    assert math.isnan(word_perplexity([], []))
    with pytest.raises(ValueError):
        word_perplexity([-1.0], [1, 2])


def test_equal_to_lm_evals_aggregations():
    metrics = pytest.importorskip("lm_eval.api.metrics")
    task = pytest.importorskip("lm_eval.api.task")
    texts = ["the cat  sat\non the mat", "naïve café ünïcode", " leading and trailing "]
    logliks = [-21.5, -7.25, -13.0]
    words = [count_words(t) for t in texts]
    n_bytes = [count_bytes(t) for t in texts]
    assert words == [task.Task.count_words(t) for t in texts]
    assert n_bytes == [task.Task.count_bytes(t) for t in texts]
    assert word_perplexity(logliks, words) == pytest.approx(metrics.weighted_perplexity(list(zip(logliks, words))),
                                                            rel=1e-12)
    assert byte_perplexity(logliks, n_bytes) == pytest.approx(
        metrics.weighted_perplexity(list(zip(logliks, n_bytes))), rel=1e-12)
    assert bits_per_byte(logliks, n_bytes) == pytest.approx(metrics.bits_per_byte(list(zip(logliks, n_bytes))),
                                                            rel=1e-12)
