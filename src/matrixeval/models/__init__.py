"""Loading Hugging Face models and capturing the hidden states of chosen layers."""

from .args import DTYPES, ModelArgs, default_model_path, parse_model_args
from .forward import ForwardOutput, forward
from .layers import resolve_layers
from .loading import LoadedModel, load_model, model_name, random_init_like

__all__ = [
    "DTYPES",
    "ForwardOutput",
    "LoadedModel",
    "ModelArgs",
    "default_model_path",
    "forward",
    "load_model",
    "model_name",
    "parse_model_args",
    "random_init_like",
    "resolve_layers",
]
