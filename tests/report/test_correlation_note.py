"""A correlation over fewer than 5 models is computed but says it rests on few models."""

import pytest
from scipy.stats import spearmanr

from matrixeval.report.compare import correlations

from .conftest import ARC_ACCURACY, ARC_ENTROPY


def test_four_models_get_a_note_five_do_not(results):
    (four,) = correlations(results[:4], "matrix_entropy", task="arc_easy")
    assert four["n"] == 4 and "only 4 models (fewer than 5)" in four["note"]
    assert four["spearman"] == pytest.approx(spearmanr(ARC_ENTROPY[:4], ARC_ACCURACY[:4]).statistic)
    (five,) = correlations(results, "matrix_entropy", task="arc_easy")
    assert five["n"] == 5 and five["note"] == ""
