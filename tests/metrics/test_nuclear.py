import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from matrixeval import matrix_nuclear_norm

from . import reference as ref


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), d=st.integers(2, 60), seed=st.integers(0, 10_000))
def test_matches_reference_code_transcription(n, d, seed):
    h = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + 1.0
    assert matrix_nuclear_norm(h).item() == pytest.approx(ref.mnn_reference_code(h), abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), d=st.integers(2, 60), seed=st.integers(0, 10_000))
def test_exact_is_sum_of_singular_values(n, d, seed):
    h = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    assert matrix_nuclear_norm(h, exact=True).item() == pytest.approx(ref.nuclear_exact(h), abs=1e-6)


def test_approximation_is_an_upper_bound_family_member():
    # Column norms of a row-normalised matrix satisfy sum(col²) = N; the exact norm is ≥ Frobenius/N.
    h = torch.randn(100, 40, dtype=torch.float64)
    exact = matrix_nuclear_norm(h, exact=True).item()
    assert exact >= (100**0.5) / 100 - 1e-12
    assert exact <= (min(100, 40) * 100) ** 0.5 / 100 + 1e-12
