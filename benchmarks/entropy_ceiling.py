"""The entropy ceiling log(N)/log(d), measured: MiniLM's normalised matrix entropy against the tokens per sample.

Run: .venv/bin/python benchmarks/entropy_ceiling.py [--out docs/entropy_ceiling.png]

The packaged all-MiniLM-L6-v2 (d = 384) reads the built-in task pydoc_topics twice:
  1. as it is (each paragraph its own length): every document's entropy against its own token count N;
  2. with --fixed_tokens L for several L: every document cut to exactly L tokens, shorter ones dropped, the mean
     entropy and its 95 % bootstrap interval at each L (n documents per point written beside it).
and draws both with the ceiling log(min(N, d))/log(d) that no N × d matrix can exceed. Writes the PNG and a JSON
of the numbers next to it (same stem). Nothing is asserted; the README quotes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LENGTHS = (4, 8, 16, 32, 64, 128, 256, 384, 512)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/entropy_ceiling.png")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")

    from matrixeval.caveats import entropy_ceiling
    from matrixeval.data import load_task, parse_task_specs
    from matrixeval.engine.files import atomic_savefig
    from matrixeval.session import Session

    [spec] = parse_task_specs("pydoc_topics")
    task = load_task(spec)
    lengths = [int(x) for x in args.lengths.split(",")]
    natural = Session(None, metrics="matrix_entropy", output_path=None)
    d = natural.lm.hidden_size
    layer = str(max(natural.layers))
    entry, records = natural.run(task.name, task.documents)
    points = [(r["layers"][layer]["n_tokens"], r["layers"][layer]["entropy"] / math.log(d))
              for r in records if r["layers"][layer]["status"] == "ok"]
    fixed = []
    for length in lengths:
        session = Session(None, metrics="matrix_entropy", output_path=None, fixed_tokens=length)
        e, _ = session.run(task.name, task.documents)
        fixed.append({"L": length, "n": e["n_samples"], "too_short": e["skipped_by_status"].get("too_short", 0),
                      "matrix_entropy": e["matrix_entropy"], "ci95": e.get("matrix_entropy_ci95"),
                      "ceiling": entropy_ceiling(length, d)})
        print(f"L={length:4d} n={e['n_samples']:4d} entropy={e['matrix_entropy']:.4f} "
              f"ceiling={entropy_ceiling(length, d):.4f}", file=sys.stderr)
    natural_mean = entry["matrix_entropy"]
    median_n = sorted(n for n, _ in points)[len(points) // 2]

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, which="both", alpha=0.3)
    grid = sorted({*range(2, 2 * d), *lengths})
    ax.plot(grid, [entropy_ceiling(n, d) for n in grid], color="black", linestyle="--",
            label=f"ceiling log(min(N, d)) / log(d), d = {d}")
    ax.scatter([n for n, _ in points], [v for _, v in points], s=6, alpha=0.35, color="C0",
               label=f"each paragraph at its own length (n = {len(points)}; mean {natural_mean:.3f})")
    xs = [f["L"] for f in fixed]
    ys = [f["matrix_entropy"] for f in fixed]
    lo = [y - f["ci95"][0] if f["ci95"] else 0.0 for y, f in zip(ys, fixed)]
    hi = [f["ci95"][1] - y if f["ci95"] else 0.0 for y, f in zip(ys, fixed)]
    ax.errorbar(xs, ys, yerr=[lo, hi], color="C3", marker="o", capsize=3,
                label="--fixed_tokens L: mean, 95 % bootstrap interval")
    for f in fixed:
        ax.annotate(f"n={f['n']}", (f["L"], f["matrix_entropy"]), textcoords="offset points", xytext=(4, -11),
                    fontsize=7, color="C3")
    ax.axvline(median_n, color="C0", linewidth=0.8, alpha=0.6)
    ax.annotate(f"median N = {median_n} (paragraphs as they are)", (median_n, 0.02), textcoords="offset points", xytext=(3, 0), fontsize=7,
                color="C0")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("tokens per sample N (log scale)")
    ax.set_ylabel("normalised matrix entropy")
    ax.set_title("all-MiniLM-L6-v2 on pydoc_topics: short texts cap the entropy")
    sparse = [f for f in fixed if f["n"] < 30]
    if sparse:
        ax.scatter([f["L"] for f in sparse], [f["matrix_entropy"] for f in sparse], s=110, facecolors="none",
                   edgecolors="darkred", linewidths=1.5, zorder=4, label="fewer than 30 documents (few_samples)")
    ax.legend(fontsize=7, loc="upper left")
    out = Path(args.out)
    atomic_savefig(fig, out, dpi=150)
    numbers = {"model": natural.lm.name, "hidden_size": d, "task": task.name, "natural_mean": natural_mean,
               "natural_n": len(points), "natural_median_tokens": median_n, "fixed_tokens": fixed,
               "natural_points": points}
    out.with_suffix(".json").write_text(_dumps(numbers))
    print(f"written: {out}, {out.with_suffix('.json')}", file=sys.stderr)
    return 0


def _dumps(numbers: dict) -> str:
    """Indented JSON with the per-paragraph (N, entropy) points on one line."""
    points = numbers.pop("natural_points")
    text = json.dumps({**numbers, "natural_points": "POINTS"}, indent=2)
    return text.replace('"POINTS"', json.dumps([[n, round(v, 6)] for n, v in points])) + "\n"


if __name__ == "__main__":
    sys.exit(main())
