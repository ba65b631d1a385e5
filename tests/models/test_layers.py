import pytest

from matrixeval.errors import MatrixEvalError
from matrixeval.models import resolve_layers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [6]),
        ("last", [6]),
        ("LAST", [6]),
        ("all", [0, 1, 2, 3, 4, 5, 6]),
        ("0,6,-1", [0, 6]),
        ("-1", [6]),
        ("-7", [0]),
        (" 3 , 1 ,3", [1, 3]),
        ("0,last", [0, 6]),
        ([5, 0, -2], [0, 5]),
        ((2,), [2]),
        (4, [4]),
    ],
)
def test_resolve_layers(spec, expected):
    assert resolve_layers(spec, 6) == expected


@pytest.mark.parametrize("spec", ["7", "0,-8", [9], 7])
def test_out_of_range_lists_valid_range(spec):
    with pytest.raises(MatrixEvalError, match=r"out of range.*6 layers; valid: 0\.\.6 or -7\.\.-1"):
        resolve_layers(spec, 6)


@pytest.mark.parametrize("spec", ["first", "1,x", [1.5], [True], [], ","])
def test_malformed_specs(spec):
    with pytest.raises(MatrixEvalError):
        resolve_layers(spec, 6)
