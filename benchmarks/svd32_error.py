"""How far the papers' float32 pipeline (float32 normalisation, d×d SVD) is from float64, on real text.

Run: PYTHONPATH=src python benchmarks/svd32_error.py  (packaged MiniLM, last layer; needs ../shared/data/wikitext-2)
Prints the normalised-entropy error's median and maximum over the first 200 non-empty wikitext-2 test lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from matrixeval.models.args import default_model_path

LINES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wikitext-2" / "test_lines.jsonl"


def normalised(h: torch.Tensor) -> torch.Tensor:
    """Centre the tokens and L2-normalise each, in h's dtype (as the reference code does)."""
    r = h - h.mean(0)
    return r / r.norm(dim=1, keepdim=True)


def entropy(cov: torch.Tensor, float32_svd: bool) -> float:
    cov = cov / torch.trace(cov)
    lam = torch.svd(cov.float())[1].double() if float32_svd else torch.linalg.eigvalsh(cov.double()).clamp_min(0)
    return float(-(lam * torch.log(lam)).nansum()) / math.log(cov.shape[0])


def main() -> None:
    torch.set_num_threads(1)
    path = default_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    texts = [t for t in (json.loads(line)["text"] for line in open(LINES)) if t.strip()][:200]
    errors = []
    with torch.no_grad():
        for text in texts:
            h = model(**tok(text, return_tensors="pt", truncation=True, max_length=512)).last_hidden_state[0]
            z32 = torch.nn.functional.normalize(normalised(h.float()), dim=1)  # cal_cov normalises again
            z64 = normalised(h.double())
            err = abs(entropy(z32.T @ z32 / len(z32), True) - entropy(z64.T @ z64 / len(z64), False))
            errors.append((err, len(h)))
    errors.sort()
    short = [e for e, n in errors if n < 32]
    long_ = [e for e, n in errors if n >= 32]
    print(f"{len(errors)} wikitext-2 test lines, d={h.shape[1]}: median {errors[len(errors) // 2][0]:.2e}, "
          f"max {errors[-1][0]:.2e} (N={errors[-1][1]}); N<32: max {max(short):.2e}; N>=32: max {max(long_):.2e}")


if __name__ == "__main__":
    main()
