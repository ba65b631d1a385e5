"""Seeded text augmentations for the augmentation metrics (LiDAR, DiME, InfoNCE).

Layer by Layer (OFSkean/information_flow ``experiments/utils/misc/model_dataloader_utils.py``,
``text_augmentation``) makes each view with nlpaug's ``Sequential([SplitAug(), RandomCharAug(), KeyboardAug()])``
at its defaults: split some words in two, then insert/substitute/swap/delete random characters, then swap
characters for keyboard neighbours. The reference seeds nothing; here every view has its own seed, drawn from
(seed, document id, view index), and Python's and NumPy's global generators are restored afterwards, so a
view's text never depends on the order in which views are made (resume, sharding) and nothing else is disturbed.
"""

from __future__ import annotations

import hashlib
import random

from ..errors import MatrixEvalError

__all__ = ["AUGMENTATION", "augment_text", "check_augmenter", "view_seed"]

AUGMENTATION = "nlpaug Sequential(SplitAug, RandomCharAug, KeyboardAug), defaults (Layer by Layer)"


def check_augmenter() -> None:
    """Fail in one line, before any model loads, when nlpaug is not installed."""
    from importlib.util import find_spec

    if find_spec("nlpaug") is None:
        raise MatrixEvalError("the augmentation metrics need nlpaug: pip install 'matrixeval[augment]' "
                              "(or pip install nlpaug)")


def view_seed(seed: int, doc_id: int, view: int) -> int:
    """A 32-bit seed of its own for each (seed, document, view)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}:{view}".encode()).digest()[:4], "little")


def augment_text(text: str, seed: int) -> str:
    """One augmented view of `text`, the same for the same seed."""
    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()  # before importing nlpaug, which draws from them
    try:
        import nlpaug.augmenter.char as nac
        import nlpaug.augmenter.word as naw
        import nlpaug.flow as naf

        random.seed(seed)
        np.random.seed(seed)
        out = naf.Sequential([naw.SplitAug(), nac.RandomCharAug(), nac.KeyboardAug()]).augment(text, n=1)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return out[0] if isinstance(out, list) else str(out)
