"""The papers' analyses, one module each, all running through `matrixeval.session.Session`.

Each module defines `DESCRIPTION` (one line), `add_arguments(parser)` (its own flags; the shared model and
task flags are already there unless `SHARED_ARGS = False`) and `run(args) -> int` (the CLI entry, which
calls the module's Python API function and prints its table). The registry maps the CLI name to the
module and imports it only when used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS: dict[str, str] = {
    "length": "matrixeval.experiments.length",
    "sentence-ops": "matrixeval.experiments.sentence_ops",
    "prompt": "matrixeval.experiments.prompt",
    "adapter": "matrixeval.experiments.adapter",
    "sampling": "matrixeval.experiments.sampling",
    "timing": "matrixeval.experiments.timing",
    "benchmark": "matrixeval.experiments.benchmark",
    "responses": "matrixeval.experiments.responses",
    "multimodal": "matrixeval.experiments.multimodal",
    "checkpoints": "matrixeval.experiments.checkpoints",
    "augment": "matrixeval.experiments.augment",
}


def load_module(path: str) -> ModuleType | None:
    """The module at `path`, or None while it is not part of this installation."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name == path:
            return None
        raise


def load_experiment(name: str) -> ModuleType | None:
    return load_module(EXPERIMENTS[name])
