"""Conformance of metrics.family with frozen numpy transcriptions of each source's own code.

Sources (read with the search tool; transcribed, not imported, so the tests need neither package):
- Layer by Layer: OFSkean/information_flow @ 703d566f7391390a2af967bf36fa1c7e5662175a,
  experiments/utils/metrics/metric_functions.py (`normalize`, `entropy_normalization`, `compute_entropy`),
  calling repitl `matrix_itl.matrixAlphaEntropy` (eigh, keep λ > 0, renormalise, log Σ λ^α / (1 − α)).
  repitl's formula divides by 1 − α, so at α = 1 it has no value; its limit, Shannon entropy, is used there.
- reptrix 0.1.0 (arnab39/reptrix @ e5adeca2bd6ea9f69102554ca923f46d13bec639 for rankme.py and alpha.py,
  00cb474c8ca73c482d5501232ffce1eb79f0d479 for utils.py): `get_rank`, `get_powerlaw`, `get_eigenspectrum`
  (sklearn PCA `explained_variance_ratio_` with every component = σ²/Σσ² of the centred matrix, by SVD here).
  Its own tests (tests/test_rankme.py @ 24bf159f6b0400f09b36408298d6a74935c1908c, tests/test_alpha.py @
  00cb474c8ca73c482d5501232ffce1eb79f0d479): torch.manual_seed(0); torch.randn(1000, 1024) has RankMe
  613.4726 and α 0.148936.
- Garrido et al. 2023, RankMe definition: p_k = σ_k / ‖σ‖₁ + ε, ε = 1e-7, RankMe = exp(−Σ p_k log p_k).
- Curvature: information_flow @ 703d566f, metric_functions.py `compute_curvature` (k = 1), on `normalize`d
  tokens as its per-forward-pass driver feeds every metric.
- Dataset entropy: information_flow experiments/utils/misc/metric_utils.py @ 9000a9714ba289c560c958fcd5f6b4877edb40f7
  (`compute_on_concatenated_passes`: `normalize` each prompt, mean over its tokens, stack the documents) into
  `compute_entropy` @ 703d566f (clamp, ÷ trace, matrixAlphaEntropy, N = number of documents).
"""

import math

import numpy as np
import pytest
import torch

from matrixeval.errors import MatrixEvalError
from matrixeval.metrics import (
    alpha_req,
    covariance_spectrum,
    curvature,
    dataset_entropy,
    effective_rank,
    effective_rank_lambda,
    effective_rank_sigma,
    family_from_spectrum,
    matrix_entropy,
    normalize_tokens,
    prompt_entropy,
    rankme,
    renyi_entropy,
    representation_spectrum,
)
from matrixeval.metrics.family import FamilyOptions, pooled_from_tokens

NORMALIZATIONS = ["maxEntropy", "logN", "logD", "logNlogD", "raw", "length"]


# --- frozen transcriptions ------------------------------------------------------------------------------


def lbl_entropy_normalization(entropy, normalization, N, D):
    if normalization == "maxEntropy":
        entropy /= min(math.log(N), math.log(D))
    elif normalization == "logN":
        entropy /= math.log(N)
    elif normalization == "logD":
        entropy /= math.log(D)
    elif normalization == "logNlogD":
        entropy /= math.log(N) * math.log(D)
    elif normalization == "raw":
        pass
    elif normalization == "length":
        entropy = N
    return entropy


def lbl_normalize(R):
    R = R - R.mean(axis=0)
    return R / np.linalg.norm(R, ord=2, axis=1, keepdims=True)


def repitl_matrix_alpha_entropy(K, alpha):
    ek = np.linalg.eigh(K)[0]
    mek = ek[ek > 0.0]
    mek = mek / np.sum(mek)
    if alpha == 1:  # repitl divides by 1 - alpha; its limit
        return float(-np.sum(mek * np.log(mek)))
    return float((1.0 / (1.0 - alpha)) * np.log(np.sum(np.exp(alpha * np.log(mek)))))


def lbl_compute_entropy(hidden_states, alpha=1, normalizations=("maxEntropy",), clamp=True):
    L, N, D = hidden_states.shape
    if N > D:
        cov = np.matmul(hidden_states.transpose(0, 2, 1), hidden_states)
    else:
        cov = np.matmul(hidden_states, hidden_states.transpose(0, 2, 1))
    if clamp:
        cov = np.clip(cov, 0, None)
    entropies = [repitl_matrix_alpha_entropy(c / np.trace(c), alpha) for c in cov]
    return {norm: [lbl_entropy_normalization(x, norm, N, D) for x in entropies] for norm in normalizations}


def reptrix_get_eigenspectrum(activations_np):
    feats = activations_np.reshape(activations_np.shape[0], -1)
    feats_center = feats - feats.mean(axis=0)
    s = np.linalg.svd(feats_center, compute_uv=False)
    return s**2 / np.sum(s**2)  # PCA(n_components=min(n, d)).explained_variance_ratio_


def reptrix_get_rank(eigen):
    l1 = np.sum(np.abs(eigen))
    eps = 1e-7
    eigen_norm = eigen / l1 + eps
    entropy = -np.sum(eigen_norm * np.log(eigen_norm))
    return np.exp(entropy)


def reptrix_get_powerlaw_alpha(eigen, trange):
    logss = np.log(np.abs(eigen))
    y = logss[trange][:, np.newaxis]
    trange = trange + 1
    nt = trange.size
    x = np.concatenate((-np.log(trange)[:, np.newaxis], np.ones((nt, 1))), axis=1)
    w = 1.0 / trange.astype(np.float32)[:, np.newaxis]
    b = np.linalg.solve(x.T @ (x * w), (w * x).T @ y).flatten()
    return b[0]


def garrido_rankme(z, eps=1e-7):
    s = np.linalg.svd(z, compute_uv=False)
    p = s / np.sum(np.abs(s)) + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def lbl_compute_curvature(hidden_states):
    """compute_curvature @ 703d566f, k = 1, per layer; torch float64 as the source."""
    def calculate_paired_curvature(a, b):
        dotproduct = torch.abs(a.T @ b)
        norm_a = torch.norm(a)
        norm_b = torch.norm(b)
        if norm_a == 0 or norm_b == 0:
            return 0
        argument = torch.clamp(dotproduct / (norm_a * norm_b), min=-1, max=1)
        return torch.arccos(argument).item()

    def calculate_layer_average_k_curvature(layer_p):
        summation, counter = 0, 0
        for k in range(1, layer_p.shape[0] - 1):
            v_k = layer_p[k].unsqueeze(1) - layer_p[k - 1].unsqueeze(1)
            v_kplusone = layer_p[k + 1].unsqueeze(1) - layer_p[k].unsqueeze(1)
            summation += calculate_paired_curvature(v_kplusone, v_k)
            counter += 1
        return summation / counter if counter > 0 else 0

    return [calculate_layer_average_k_curvature(layer.double()) for layer in hidden_states]


def lbl_dataset_entropy(prompts, alpha=1, normalizations=("maxEntropy",), clamp=True):
    """compute_on_concatenated_passes (one view, one layer) then compute_entropy."""
    pooled = np.stack([lbl_normalize(p).mean(axis=0) for p in prompts])  # NUM_SAMPLES x D
    return lbl_compute_entropy(pooled[None], alpha=alpha, normalizations=normalizations, clamp=clamp)


# --- fixed tensors ---------------------------------------------------------------------------------------


def _tokens(n: int, d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, rank or d, generator=g, dtype=torch.float64)
    if rank is not None:
        x = x @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    return x + 0.5 * torch.randn(d, generator=g, dtype=torch.float64)  # an offset, so centring matters


# N < D (N×N Gram clamped), N > D (D×D), and a low-rank case
CASES = [(12, 40, 0, None), (60, 16, 1, None), (30, 48, 2, 5)]


@pytest.mark.parametrize("n,d,seed,rank", CASES)
@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_prompt_entropy_matches_layer_by_layer_for_every_normalization(n, d, seed, rank, alpha):
    h = _tokens(n, d, seed, rank)
    ref = lbl_compute_entropy(lbl_normalize(h.numpy())[None], alpha=alpha, normalizations=NORMALIZATIONS)
    for norm in NORMALIZATIONS:
        got = prompt_entropy(h, alpha=alpha, normalization=norm).item()
        assert got == pytest.approx(ref[norm][0], rel=1e-9, abs=1e-12), norm


@pytest.mark.parametrize("n,d,seed,rank", CASES)
def test_clamp_changes_the_value_and_without_it_alpha_one_is_matrix_entropy(n, d, seed, rank):
    h = _tokens(n, d, seed, rank)
    plain = prompt_entropy(h, normalization="logD", clamp=False).item()
    assert plain == pytest.approx(matrix_entropy(h).item(), rel=1e-12)
    ref = lbl_compute_entropy(lbl_normalize(h.numpy())[None], normalizations=["logD"], clamp=False)["logD"][0]
    assert plain == pytest.approx(ref, rel=1e-9)
    clamped = prompt_entropy(h, normalization="logD").item()
    assert clamped > plain + 1e-3  # clamping removes the negative cosines: the spectrum spreads out


def test_renyi_alpha_one_on_the_shared_spectrum_is_todays_matrix_entropy():
    h = torch.stack([_tokens(20, 32, s) for s in range(3)])
    t = normalize_tokens(h)
    lam = covariance_spectrum(t.z, t.used)
    torch.testing.assert_close(renyi_entropy(lam, t.n_used, 32, normalization="logD"), matrix_entropy(h))
    torch.testing.assert_close(effective_rank_lambda(lam), effective_rank(h))


def test_prompt_entropy_is_batched_with_a_mask():
    a, b = _tokens(10, 24, 3), _tokens(16, 24, 4)
    batch = torch.zeros(2, 16, 24, dtype=torch.float64)
    batch[0, :10], batch[1] = a, b
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :10], mask[1] = True, True
    got = prompt_entropy(batch, mask, alpha=2.0, normalization="maxEntropy")
    want = torch.stack([prompt_entropy(x, alpha=2.0, normalization="maxEntropy") for x in (a, b)])
    torch.testing.assert_close(got, want)
    assert torch.isnan(prompt_entropy(torch.ones(1, 24))).item()


def test_reptrix_own_checks_rankme_and_alpha():
    torch.manual_seed(0)
    x = torch.randn(1000, 1024)
    lam, k = representation_spectrum(x)
    assert np.allclose(rankme(lam, convention="reptrix", k=k).item(), 613.4726)
    assert np.allclose(alpha_req(lam).item(), 0.148936)


def test_a_numpy_draw_of_the_same_shape_is_another_matrix_with_another_rankme():
    """The issue quotes the check as `np.random.seed(0); np.random.randn(1000, 1024)`; reptrix's test seeds numpy
    too but draws with torch. The numpy matrix has another RankMe, by the transcription and by matrixeval alike."""
    np.random.seed(0)
    x = np.random.randn(1000, 1024)
    want = reptrix_get_rank(reptrix_get_eigenspectrum(x))
    lam, k = representation_spectrum(torch.from_numpy(x))
    assert rankme(lam, convention="reptrix", k=k).item() == pytest.approx(want, rel=1e-9)
    assert want == pytest.approx(613.93, abs=0.01) and not np.allclose(want, 613.4726)


@pytest.mark.parametrize("n,d,seed,rank", CASES + [(150, 120, 5, None)])
def test_rankme_both_conventions_and_effective_ranks_match_the_sources(n, d, seed, rank):
    x = _tokens(n, d, seed, rank)
    lam, k = representation_spectrum(x)
    eig = reptrix_get_eigenspectrum(x.numpy())
    assert rankme(lam, convention="reptrix", k=k).item() == pytest.approx(reptrix_get_rank(eig), rel=1e-9)
    raw, k_raw = representation_spectrum(x, center=False)
    assert rankme(raw, k=k_raw).item() == pytest.approx(garrido_rankme(x.numpy()), rel=1e-9)
    # on matrixeval's centred, normalised tokens: σ of Z and λ = σ²/n of Σ from the one spectrum
    t = normalize_tokens(x)
    z = t.z[0].numpy()
    lam_z = covariance_spectrum(t.z, t.used)[0]
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum()
    assert effective_rank_sigma(lam_z).item() == pytest.approx(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))), rel=1e-9)
    q = s**2 / np.sum(s**2)
    assert effective_rank_lambda(lam_z).item() == pytest.approx(np.exp(-np.sum(q[q > 0] * np.log(q[q > 0]))), rel=1e-9)
    assert rankme(lam_z).item() == pytest.approx(garrido_rankme(z), rel=1e-9)
    assert rankme(lam_z).item() != pytest.approx(rankme(lam_z, convention="reptrix").item(), rel=1e-3)


@pytest.mark.parametrize("window", [(10, 100), (3, 40), (0, 117)])
def test_alpha_req_matches_reptrix_powerlaw_fit_for_any_window(window):
    x = _tokens(150, 120, 6) * torch.arange(1, 121, dtype=torch.float64).pow(-0.7)
    lam, _ = representation_spectrum(x)
    want = reptrix_get_powerlaw_alpha(reptrix_get_eigenspectrum(x.numpy()), np.arange(*window))
    assert alpha_req(lam, window).item() == pytest.approx(want, rel=1e-6)


def test_alpha_req_is_nan_where_the_window_leaves_the_spectrum():
    lam, _ = representation_spectrum(_tokens(50, 40, 7))
    assert torch.isnan(alpha_req(lam)).item()  # 40 eigenvalues, window 10–99
    low, _ = representation_spectrum(_tokens(50, 40, 7, rank=5))
    assert torch.isnan(alpha_req(low, (2, 20))).item()  # zero eigenvalues in the window


def test_bad_arguments_are_one_line_errors():
    lam = torch.full((4,), 0.25, dtype=torch.float64)
    with pytest.raises(MatrixEvalError, match="normalization must be one of maxEntropy"):
        renyi_entropy(lam, 4, 8, normalization="logd")
    with pytest.raises(MatrixEvalError, match="convention must be 'garrido' or 'reptrix'"):
        rankme(lam, convention="wei")
    with pytest.raises(MatrixEvalError, match="window"):
        alpha_req(lam, (5, 5))
    with pytest.raises(MatrixEvalError, match="alpha must be a positive"):
        prompt_entropy(torch.randn(5, 4), alpha=0.0)


def test_engine_columns_come_from_the_spectral_metrics_spectrum_and_are_nan_where_undefined():
    from matrixeval.metrics import spectral_metrics

    h = torch.zeros(3, 12, 20, dtype=torch.float64)
    h[0], h[1, :9] = _tokens(12, 20, 8), _tokens(9, 20, 9)
    h[2] = 1.0  # every token identical: degenerate
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 9:] = False
    r = spectral_metrics(h, mask)
    cols = family_from_spectrum(r.spectrum, r.n_tokens, r.hidden_size, r.status_code)
    for i, n in ((0, 12), (1, 9)):
        z = lbl_normalize(h[i, :n].numpy())
        assert cols["rankme"][i].item() == pytest.approx(garrido_rankme(z), rel=1e-9)
        s = np.linalg.svd(z, compute_uv=False)  # the rows of z are unit, so not centred again: σ² of z itself
        assert cols["rankme_reptrix"][i].item() == pytest.approx(reptrix_get_rank(s**2 / np.sum(s**2)), rel=1e-9)
    assert r.status[2] == "degenerate" and all(torch.isnan(v[2]).item() for v in cols.values())


@pytest.mark.parametrize("n,d,seed,rank", CASES + [(3, 8, 10, None), (2, 8, 11, None)])
def test_curvature_matches_layer_by_layer(n, d, seed, rank):
    h = _tokens(n, d, seed, rank)
    want = lbl_compute_curvature(torch.from_numpy(lbl_normalize(h.numpy()))[None])[0]
    assert curvature(h).item() == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_curvature_counts_a_zero_difference_as_zero_and_is_batched_with_a_mask():
    h = _tokens(9, 12, 12)
    h[4] = h[3]  # a repeated token: v_4 = 0, so two pairs count 0, as the source
    want = lbl_compute_curvature(torch.from_numpy(lbl_normalize(h.numpy()))[None])[0]
    assert curvature(h).item() == pytest.approx(want, rel=1e-12)
    assert 0 < want < math.pi / 2
    batch = torch.zeros(2, 9, 12, dtype=torch.float64)
    batch[0, :6], batch[1] = h[:6], h
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :6], mask[1] = True, True
    torch.testing.assert_close(curvature(batch, mask), torch.stack([curvature(h[:6]), curvature(h)]))
    assert torch.isnan(curvature(torch.ones(1, 12))).item()


def _documents(lengths, d, seed):
    return [_tokens(n, d, seed + i) for i, n in enumerate(lengths)]


def _pooled(docs):
    """The engine's path: one padded batch, normalise_tokens, pooled_from_tokens."""
    n = max(x.shape[0] for x in docs)
    batch = torch.zeros(len(docs), n, docs[0].shape[1], dtype=torch.float64)
    mask = torch.zeros(len(docs), n, dtype=torch.bool)
    for i, x in enumerate(docs):
        batch[i, : x.shape[0]], mask[i, : x.shape[0]] = x, True
    return pooled_from_tokens(normalize_tokens(batch, mask))


@pytest.mark.parametrize("lengths,d", [([5, 9, 7, 12, 6], 24), ([6, 8, 5, 7, 9, 11, 4, 10, 6, 8], 6)])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_dataset_entropy_matches_layer_by_layer_for_every_normalization(lengths, d, alpha):
    docs = _documents(lengths, d, 20)
    ref = lbl_dataset_entropy([x.numpy() for x in docs], alpha=alpha, normalizations=NORMALIZATIONS)
    pooled = _pooled(docs)["mean"]
    for norm in NORMALIZATIONS:
        got = dataset_entropy(pooled, alpha=alpha, normalization=norm)
        assert got == pytest.approx(ref[norm][0], rel=1e-9), norm
    plain = lbl_dataset_entropy([x.numpy() for x in docs], alpha=alpha, clamp=False)["maxEntropy"][0]
    assert dataset_entropy(pooled, alpha=alpha, clamp=False) == pytest.approx(plain, rel=1e-9)


def test_dataset_entropy_is_the_same_from_any_split_and_order_of_documents():
    docs = _documents([5, 9, 7, 12, 6, 8, 10], 16, 30)
    whole = torch.cat([_pooled(docs)["mean"]])
    parts = torch.cat([_pooled(docs[4:])["mean"], _pooled(docs[:4])["mean"]])  # two "ranks", merged in any order
    assert dataset_entropy(parts) == pytest.approx(dataset_entropy(whole), rel=1e-12)
    last = _pooled(docs)["last"]
    want = np.stack([lbl_normalize(x.numpy())[-1] for x in docs])
    np.testing.assert_allclose(last.numpy(), want, rtol=1e-12)
    assert math.isnan(dataset_entropy(whole[:1]))


def test_family_options_check_their_values():
    with pytest.raises(MatrixEvalError, match="normalization must be one of"):
        FamilyOptions(normalization="logd")
    with pytest.raises(MatrixEvalError, match="alpha_req window"):
        FamilyOptions(alpha_req_window=(4, 5))
