import math

import pytest
import torch

from matrixeval import effective_rank, matrix_entropy, matrix_nuclear_norm, spectral_metrics

from . import reference as ref


def test_all_metrics_from_one_call_match_the_single_functions_and_reference():
    h = torch.randn(4, 30, 20, generator=torch.Generator().manual_seed(0))
    r = spectral_metrics(h)
    for i in range(4):
        assert r.matrix_entropy[i].item() == pytest.approx(ref.matrix_entropy(h[i]), abs=1e-7)
        assert r.entropy[i].item() == pytest.approx(ref.entropy_nats(h[i]), abs=1e-6)
        assert r.effective_rank[i].item() == pytest.approx(math.exp(ref.entropy_nats(h[i])), rel=1e-6)
        assert r.nuclear_norm[i].item() == pytest.approx(ref.mnn_reference_code(h[i]), abs=1e-6)
        assert r.nuclear_norm_exact[i].item() == pytest.approx(ref.nuclear_exact(h[i]), abs=1e-6)
    assert torch.equal(r.matrix_entropy, matrix_entropy(h))
    assert torch.equal(r.effective_rank, effective_rank(h))
    assert torch.equal(r.nuclear_norm, matrix_nuclear_norm(h))
    assert r.status == ["ok"] * 4 and r.n_tokens.tolist() == [30] * 4 and r.hidden_size == 20


@pytest.mark.parametrize("n,d", [(40, 16), (10, 64)])  # both Gram orientations
def test_padded_batch_equals_per_sample(n, d):
    g = torch.Generator().manual_seed(1)
    lengths = [n, n // 2, 3, 2]
    batch = torch.randn(len(lengths), n, d, generator=g) * 1e3  # padding garbage must not matter
    mask = torch.zeros(len(lengths), n, dtype=torch.bool)
    for i, length in enumerate(lengths):
        mask[i, :length] = True
    r = spectral_metrics(batch, mask)
    for i, length in enumerate(lengths):
        one = spectral_metrics(batch[i, :length])
        for name in ("matrix_entropy", "effective_rank", "nuclear_norm", "nuclear_norm_exact"):
            # float32 centring sums in another order when padded: equal to float32 rounding
            assert getattr(r, name)[i].item() == pytest.approx(getattr(one, name).item(), abs=1e-7), name
        assert r.n_tokens[i].item() == length


def test_padding_positions_can_hold_nan():
    h = torch.randn(2, 8, 6)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    h[0, 5:] = float("nan")
    r = spectral_metrics(h, mask)
    assert r.status == ["ok", "ok"]
    assert r.matrix_entropy[0].item() == pytest.approx(ref.matrix_entropy(h[0, :5]), abs=1e-7)


def test_every_status():
    d = 8
    h = torch.randn(4, 5, d)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 1:] = False  # one token
    h[1] = torch.randn(d)  # five identical tokens
    h[2, 3, 2] = float("inf")
    r = spectral_metrics(h, mask)
    assert r.status == ["too_few_tokens", "degenerate", "nonfinite", "ok"]
    for name in ("matrix_entropy", "entropy", "effective_rank", "nuclear_norm", "nuclear_norm_exact"):
        values = getattr(r, name)
        assert torch.isnan(values[:3]).all() and torch.isfinite(values[3]), name
    assert r.n_tokens[1].item() == 0 and r.n_dropped[1].item() == 5


def test_single_sample_status_is_a_string():
    assert spectral_metrics(torch.randn(1, 4)).status == "too_few_tokens"
    assert spectral_metrics(torch.full((3, 4), float("nan"))).status == "nonfinite"


def test_rounding_noise_tokens_are_dropped_and_counted():
    # Three copies of the mean token: their centred vectors are only rounding noise in float32.
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(16, generator=g) * 50, torch.randn(16, generator=g) * 50
    mid = (a + b) / 2
    h = torch.stack([a, b, mid, mid, mid]).float()
    r = spectral_metrics(h)
    assert r.status == "ok"
    assert r.n_tokens.item() == 2 and r.n_dropped.item() == 3
    assert r.matrix_entropy.item() == pytest.approx(0.0, abs=1e-12)  # a and b centre to ±v


def test_many_layers_as_a_batch():
    layers = torch.randn(5, 12, 10)
    r = spectral_metrics(layers)
    assert [round(x, 9) for x in r.matrix_entropy.tolist()] == [round(matrix_entropy(x).item(), 9) for x in layers]


def test_batched_and_per_sample_spectra_agree():
    from matrixeval.metrics import covariance_spectrum, normalize_tokens

    for n, d in [(30, 12), (12, 30)]:
        h = torch.randn(3, n, d, dtype=torch.float64)
        mask = torch.ones(3, n, dtype=torch.bool)
        mask[1, n // 2 :] = False
        t = normalize_tokens(h, mask)
        a = covariance_spectrum(t.z, t.used, batched=True)
        b = covariance_spectrum(t.z, t.used, batched=False)
        # batched spectra carry extra zero eigenvalues for padding; compare the sorted non-zero parts
        for i in range(3):
            assert torch.allclose(a[i].sort().values[-min(n, d):], b[i].sort().values, atol=1e-12)


@pytest.mark.parametrize("n,d", [(600, 700), (900, 520), (513, 513)])
def test_block_triangular_gram_gives_the_full_products_spectrum(n, d):
    from matrixeval.metrics import covariance_spectrum, normalize_tokens

    h = torch.randn(n, d, dtype=torch.float64)
    t = normalize_tokens(h)
    z = t.z[0]
    full = z.T @ z / n if n > d else z @ z.T / n
    expected = torch.linalg.eigvalsh(full).clamp(min=0)
    got = covariance_spectrum(t.z, t.used)[0]
    assert torch.allclose(got, expected / expected.sum(), atol=1e-13)
