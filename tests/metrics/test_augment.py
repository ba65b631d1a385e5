"""LiDAR, DiME and InfoNCE against frozen re-implementations of their sources' own code, on fixed tensors.

Sources, written out below as they are (loops and all): OFSkean/information_flow
experiments/utils/metrics/metric_functions.py @ 703d566f (compute_LDA_matrix, compute_lidar, compute_dime,
compute_infonce, entropy_normalization) and uk-cliplab/representation-itl src/repitl @ fd0da54
(matrix_itl.matrixAlphaEntropy / vonNeumannEntropy / generalizedInformationPotential without the α = 2 shortcut,
difference_of_entropies.doe with torch.randperm from the global generator).
"""

import math

import pytest
import torch

from matrixeval.metrics.augment import dime, infonce, lda_matrix, lidar, positive_spectrum_entropy


# ---- frozen reference (repitl @ fd0da54) ----
def _ref_von_neumann(K):
    ek, _ = torch.linalg.eigh(K)
    mek = ek[torch.gt(ek, 0.0)]
    mek = mek / mek.sum()
    return -1 * torch.sum(mek * torch.log(mek))


def _ref_gip(K, alpha):
    ek, _ = torch.linalg.eigh(K)
    mek = ek[torch.gt(ek, 0.0)]
    mek = mek / torch.sum(mek)
    return torch.sum(torch.exp(alpha * torch.log(mek)))


def _ref_alpha_entropy(K, alpha):
    if alpha == 1:
        return _ref_von_neumann(K)
    return (1.0 / (1.0 - alpha)) * torch.log(_ref_gip(K, alpha).real)


def _ref_doe(Kx, Ky, alpha, n_iters=10):
    def permute(K):
        idx = torch.randperm(K.shape[0])
        return K[idx, :][:, idx]

    H = _ref_alpha_entropy(Kx * Ky, alpha)
    avg = 0
    for _ in range(n_iters):
        avg = avg + _ref_alpha_entropy(Kx * permute(Ky), alpha) / n_iters
    return avg - H


# ---- frozen reference (information_flow @ 703d566f) ----
def _ref_norm(entropy, normalization, N, D):
    if normalization == "maxEntropy":
        return entropy / min(math.log(N), math.log(D))
    if normalization == "logN":
        return entropy / math.log(N)
    if normalization == "logD":
        return entropy / math.log(D)
    return entropy


def _ref_lda(t):
    NUM_SAMPLES, NUM_AUGMENTATIONS, D = t.shape
    delta = 1e-4
    dataset_mean = torch.mean(t, dim=(0, 1)).squeeze()
    class_means = torch.mean(t, dim=1)
    between = torch.zeros((D, D), dtype=t.dtype)
    for i in range(NUM_SAMPLES):
        between += torch.outer(class_means[i] - dataset_mean, class_means[i] - dataset_mean)
    between /= NUM_SAMPLES
    within = torch.zeros((D, D), dtype=t.dtype)
    for i in range(NUM_SAMPLES):
        for j in range(NUM_AUGMENTATIONS):
            within += torch.outer(t[i, j] - class_means[i], t[i, j] - class_means[i])
    within /= NUM_SAMPLES * NUM_AUGMENTATIONS
    within += delta * torch.eye(D, dtype=t.dtype)
    eigs, eigvecs = torch.linalg.eigh(within)
    frac = eigvecs @ torch.diag(eigs ** (-0.5)) @ eigvecs.T
    return frac @ between @ frac


def _ref_lidar(hidden_states, alpha, norm):
    L, NUM_SAMPLES, NUM_AUG, D = hidden_states.shape
    return [_ref_norm(_ref_alpha_entropy(_ref_lda(layer.double()), alpha).item(), norm, NUM_SAMPLES, D)
            for layer in hidden_states]


def _ref_dime(hidden_states, alpha, norm):
    hidden_states = hidden_states.permute(0, 2, 1, 3)
    L, NUM_AUG, NUM_SAMPLES, D = hidden_states.shape
    if NUM_SAMPLES > D:
        cov = torch.matmul(hidden_states.transpose(-1, -2), hidden_states)
    else:
        cov = torch.matmul(hidden_states, hidden_states.transpose(-1, -2))
    return [_ref_norm(_ref_doe(c[0].double(), c[1].double(), alpha=alpha, n_iters=10).item(), norm, NUM_SAMPLES, D)
            for c in cov]


def _ref_infonce(hidden_states, temperature=0.1):
    hidden_states = hidden_states.permute(0, 2, 1, 3)
    L, NUM_AUG, NUM_SAMPLES, D = hidden_states.shape
    raw = []
    for e in hidden_states:
        a, b = e[0].double(), e[1].double()
        logits = a @ b.T
        labels = torch.arange(len(a))
        raw.append(torch.nn.functional.cross_entropy(logits / temperature, labels, reduction="mean").item())
    return raw, [1 - (x / math.log(NUM_SAMPLES)) for x in raw]


def _views(n, k, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, d, generator=g, dtype=torch.float64)
    return base + 0.3 * torch.randn(n, k, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n,k,d", [(12, 4, 8), (6, 3, 16), (20, 2, 5)])
def test_lda_matrix_equals_the_lidar_papers_loops(n, k, d):
    x = _views(n, k, d)
    torch.testing.assert_close(lda_matrix(x), _ref_lda(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("norm", ["maxEntropy", "logN", "logD", "raw"])
def test_lidar_equals_the_reference(alpha, norm):
    x = _views(10, 4, 6)
    [ref] = _ref_lidar(x.unsqueeze(0), alpha, norm)
    assert lidar(x, alpha=alpha, normalization=norm) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("n,d", [(10, 6), (5, 12)])  # both branches: N > D uses XᵀX, N ≤ D uses XXᵀ
@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_dime_equals_the_reference_with_the_same_permutations(n, d, alpha):
    x = _views(n, 2, d, seed=3)
    torch.manual_seed(7)  # the reference draws its permutations from the global generator
    [ref] = _ref_dime(x.unsqueeze(0), alpha, "maxEntropy")
    got = dime(x[:, 0], x[:, 1], alpha=alpha, n_iters=10, generator=torch.Generator().manual_seed(7))
    assert got == pytest.approx(ref, rel=1e-10)


def test_dime_is_repeatable_with_a_seed_and_positive_for_paired_views():
    x = _views(16, 2, 4, seed=1)
    first = dime(x[:, 0], x[:, 1], generator=torch.Generator().manual_seed(0))
    assert first == dime(x[:, 0], x[:, 1], generator=torch.Generator().manual_seed(0))
    assert first > 0  # views of one document share most of their vector: permuting pairs raises the entropy


def test_infonce_equals_the_reference():
    x = _views(9, 2, 7, seed=2)
    (ref,), (ref_bound,) = _ref_infonce(x.unsqueeze(0))
    got, bound = infonce(x[:, 0], x[:, 1], temperature=0.1)
    assert got == pytest.approx(ref, rel=1e-12) and bound == pytest.approx(ref_bound, rel=1e-12)


def test_positive_spectrum_entropy_ignores_non_positive_eigenvalues():
    m = torch.diag(torch.tensor([0.5, 0.5, 0.0, -1e-3], dtype=torch.float64))
    assert float(positive_spectrum_entropy(m)) == pytest.approx(math.log(2))
    assert float(positive_spectrum_entropy(m, alpha=2.0)) == pytest.approx(math.log(2))
