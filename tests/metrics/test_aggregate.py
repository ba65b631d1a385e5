import math
import statistics

import pytest
import torch

import numpy as np

from matrixeval import aggregate, diff_erank, diff_erank_per_sample, summarize


def test_three_dataset_values_and_skips():
    h = [2.0, 3.0, float("nan"), 4.0]
    d = 16
    agg = aggregate(h, d)
    finite = [2.0, 3.0, 4.0]
    assert agg.a.mean == pytest.approx(statistics.mean(x / math.log(d) for x in finite))
    assert agg.b == pytest.approx(math.exp(statistics.mean(finite)) / d)
    assert agg.c == pytest.approx(statistics.mean(math.exp(x) for x in finite) / d)
    assert agg.n == 3 and agg.n_skipped == 1
    assert agg.a.stderr == pytest.approx(statistics.stdev(x / math.log(d) for x in finite) / math.sqrt(3))


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = torch.randn(200, generator=torch.Generator().manual_seed(0)).tolist()
    s1, s2, s3 = summarize(x, seed=1), summarize(x, seed=1), summarize(x, seed=2)
    assert s1.ci95 == s2.ci95 and s1.ci95 != s3.ci95
    assert s1.ci95[0] < s1.mean < s1.ci95[1]
    # the percentile interval's half-width is close to 1.96 standard errors for a mean
    assert (s1.ci95[1] - s1.ci95[0]) / 2 == pytest.approx(1.96 * s1.stderr, rel=0.2)


def test_summary_of_nothing_is_nan_not_an_error():
    s = summarize([float("nan")])
    assert math.isnan(s.mean) and s.n == 0 and s.n_skipped == 1


def test_concatenated_parts_give_the_one_shot_answer():
    x = torch.randn(50, dtype=torch.float64)
    assert summarize(torch.cat([x[:20], x[20:]])).mean == summarize(x).mean


def test_diff_erank_exponentiates_the_mean_entropies_over_pairs_valid_in_both():
    h0, h1 = [3.0, 2.5, float("nan"), 4.0], [2.0, 2.5, 1.0, float("inf")]
    s = diff_erank(h0, h1)
    # the authors' code: exp(mean H_untrained) - exp(mean H_trained), over the first two (valid in both) pairs
    assert s.mean == pytest.approx(math.exp((3.0 + 2.5) / 2) - math.exp((2.0 + 2.5) / 2))
    assert s.n == 2 and s.n_skipped == 2
    per = diff_erank_per_sample(h0, h1)
    assert per.mean == pytest.approx(((math.exp(3) - math.exp(2)) + 0.0) / 2) and per.n == 2
    with pytest.raises(ValueError, match="paired"):
        diff_erank([1.0], [1.0, 2.0])


def test_diff_erank_stderr_and_interval_against_numpy():
    rng = np.random.default_rng(0)
    h0 = rng.normal(3.0, 0.3, 400)
    h1 = h0 - 0.8 + rng.normal(0, 0.1, 400)
    s = diff_erank(h0.tolist(), h1.tolist(), seed=3)
    assert s.mean == pytest.approx(np.exp(h0.mean()) - np.exp(h1.mean()), rel=1e-12)
    # delta method by hand: the gradient of exp(m0) - exp(m1) is (exp(m0), -exp(m1))
    g = np.array([np.exp(h0.mean()), -np.exp(h1.mean())])
    cov = np.cov(np.stack([h0, h1]), ddof=1) / h0.size
    assert s.stderr == pytest.approx(float(np.sqrt(g @ cov @ g)), rel=1e-9)
    # and a numpy bootstrap of the statistic over paired resamples agrees with the seeded interval's width
    idx = rng.integers(0, h0.size, (2000, h0.size))
    boot = np.exp(h0[idx].mean(1)) - np.exp(h1[idx].mean(1))
    lo, hi = np.quantile(boot, [0.025, 0.975])
    assert s.ci95[0] == pytest.approx(lo, abs=0.15 * (hi - lo)) and s.ci95[1] == pytest.approx(hi, abs=0.15 * (hi - lo))
    assert s.ci95[0] < s.mean < s.ci95[1]
