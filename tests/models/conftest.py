import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

from matrixeval.models import LoadedModel, load_model, parse_model_args  # noqa: E402
from tests.tiny_models import CAUSAL_FAMILIES, make_tiny_bert, make_tiny_causal_lm  # noqa: E402

from .helpers import ALL_FAMILIES, load, tiny_path  # noqa: E402


@pytest.fixture(scope="session", params=ALL_FAMILIES)
def any_lm(request, tiny_root) -> LoadedModel:
    return load(tiny_path(tiny_root, request.param))


@pytest.fixture(scope="session", params=CAUSAL_FAMILIES)
def causal_lm(request, tiny_root) -> LoadedModel:
    return load(tiny_path(tiny_root, request.param))


@pytest.fixture(scope="session")
def gpt2_path(tiny_root):
    return make_tiny_causal_lm(tiny_root, "gpt2")


@pytest.fixture(scope="session")
def llama_path(tiny_root):
    return make_tiny_causal_lm(tiny_root, "llama")


@pytest.fixture(scope="session")
def bert_lm(tiny_root) -> LoadedModel:
    return load(make_tiny_bert(tiny_root))


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    """The packaged all-MiniLM-L6-v2, loaded offline once."""
    return load_model(parse_model_args(None), device="cpu")
