import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from matrixeval import MatrixEvalError, effective_rank, matrix_entropy

from . import reference as ref


def _random(n: int, d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if rank is not None:
        return torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g)
    scale = torch.rand(d, generator=g) * 3
    return torch.randn(n, d, generator=g) * scale + torch.randn(d, generator=g)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 80), d=st.integers(2, 80), seed=st.integers(0, 10_000), low_rank=st.booleans())
def test_matches_float64_dxd_reference(n, d, seed, low_rank):
    h = _random(n, d, seed, rank=max(1, min(n, d) // 4) if low_rank else None)
    assert matrix_entropy(h).item() == pytest.approx(ref.matrix_entropy(h), abs=1e-6)


@pytest.mark.parametrize("n,d,rank", [(512, 1024, None), (300, 96, None), (512, 1024, 12), (200, 64, 3)])
def test_accuracy_target_on_larger_inputs(n, d, rank):
    h = _random(n, d, 7, rank)
    assert abs(matrix_entropy(h).item() - ref.matrix_entropy(h)) <= 1e-6


@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.0])
def test_renyi_matches_reference(alpha):
    h = _random(40, 24, 3)
    expected = ref.entropy_nats(h, alpha) / math.log(24)
    assert matrix_entropy(h, alpha=alpha).item() == pytest.approx(expected, abs=1e-8)


def test_renyi_tends_to_von_neumann():
    h = _random(40, 24, 4)
    assert matrix_entropy(h, alpha=1.0 + 1e-6).item() == pytest.approx(matrix_entropy(h).item(), abs=1e-5)


def test_orthonormal_directions_closed_form():
    # N orthonormal tokens centre to a regular simplex: N-1 equal eigenvalues 1/(N-1).
    n, d = 6, 16
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
    h = q[:n] * 5.0
    assert matrix_entropy(h).item() == pytest.approx(math.log(n - 1) / math.log(d), abs=1e-12)
    assert effective_rank(h).item() == pytest.approx(n - 1, abs=1e-9)


def test_rank_one_is_zero():
    # Tokens on a line through the mean: centred vectors are ±v, so Σ has rank 1.
    v = torch.randn(32, dtype=torch.float64)
    h = torch.tensor([-2.0, -1.0, 1.5, 3.0], dtype=torch.float64).unsqueeze(1) * v + torch.randn(32, dtype=torch.float64)
    assert matrix_entropy(h).item() == pytest.approx(0.0, abs=1e-12)
    assert effective_rank(h).item() == pytest.approx(1.0, abs=1e-12)


def test_normalizations():
    h = _random(20, 50, 5)
    h_nats = ref.entropy_nats(h)
    assert matrix_entropy(h, normalize="none").item() == pytest.approx(h_nats, abs=1e-8)
    assert matrix_entropy(h, normalize="logn").item() == pytest.approx(h_nats / math.log(20), abs=1e-8)
    assert matrix_entropy(h, normalize="max").item() == pytest.approx(h_nats / math.log(20), abs=1e-8)
    h2 = _random(60, 10, 5)
    assert matrix_entropy(h2, normalize="max").item() == pytest.approx(ref.entropy_nats(h2) / math.log(10), abs=1e-8)


def test_invariances():
    h = _random(50, 32, 11).double()
    base = matrix_entropy(h).item()
    perm = torch.randperm(50)
    q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    assert matrix_entropy(h[perm]).item() == pytest.approx(base, abs=1e-10)
    assert matrix_entropy(h @ q).item() == pytest.approx(base, abs=1e-10)
    assert matrix_entropy(h * 37.5).item() == pytest.approx(base, abs=1e-10)
    assert matrix_entropy(h + torch.randn(32, dtype=torch.float64) * 100).item() == pytest.approx(base, abs=1e-9)


def test_bf16_and_fp16_inputs_are_upcast_before_centring():
    h = _random(64, 48, 2) + 30.0  # a large shared offset makes low-precision centring lossy
    for dtype in (torch.bfloat16, torch.float16):
        low = h.to(dtype)
        expected = ref.matrix_entropy(low.double())  # the exact value of the low-precision input
        got = matrix_entropy(low)
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(expected, abs=1e-6)


def test_returns_float64_shapes():
    assert matrix_entropy(_random(5, 4, 0)).shape == ()
    assert matrix_entropy(_random(5, 4, 0).expand(3, 5, 4)).shape == (3,)
    assert effective_rank(_random(5, 4, 0).expand(3, 5, 4)).dtype == torch.float64


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(MatrixEvalError, match="normalize must be one of"):
        matrix_entropy(torch.randn(4, 4), normalize="log2")
    with pytest.raises(MatrixEvalError, match="alpha must be"):
        matrix_entropy(torch.randn(4, 4), alpha=0.0)
    with pytest.raises(MatrixEvalError, match="shape"):
        matrix_entropy(torch.randn(4))
    with pytest.raises(MatrixEvalError, match="floating-point"):
        matrix_entropy(torch.ones(4, 4, dtype=torch.long))
    with pytest.raises(MatrixEvalError, match="mask must have shape"):
        matrix_entropy(torch.randn(2, 4, 4), torch.ones(2, 3, dtype=torch.bool))
