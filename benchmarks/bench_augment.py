"""What the augmentation metrics (lidar, dime, infonce) cost next to matrix entropy alone, side by side in one run.

Run: .venv/bin/python benchmarks/bench_augment.py [--limit 40] [--views 2,8] [--layers all]

On the packaged all-MiniLM-L6-v2 and the built-in pydoc_topics task, times `Session.run` with nothing stored
(output_path=None) for --metrics matrix_entropy, then for matrix_entropy plus the four augmentation metrics at
each --views K, and counts the model forward passes (engine.measure.forward, wrapped). Making the views (nlpaug)
is timed apart. Ratios are printed, nothing is asserted: each document costs K more forwards.
"""

from __future__ import annotations

import argparse
import time

import matrixeval.engine.measure as measure
from matrixeval.data import load_task, parse_task_specs
from matrixeval.data.augment import augment_text, view_seed
from matrixeval.session import Session

AUG = ["lidar", "dime", "infonce", "infonce_mi_lower_bound"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--views", default="2,8")
    p.add_argument("--layers", default="all")
    a = p.parse_args()
    (spec,) = parse_task_specs("pydoc_topics")
    docs = load_task(spec, limit=a.limit).documents
    calls = {"n": 0, "rows": 0}
    real_forward = measure.forward

    def counted(lm, ids, *args, **kwargs):
        calls["n"] += 1
        calls["rows"] += ids.shape[0]
        return real_forward(lm, ids, *args, **kwargs)

    measure.forward = counted
    rows = []
    for k in [0, *(int(v) for v in a.views.split(","))]:
        metrics = ["matrix_entropy", *(AUG if k else [])]
        session = Session(None, metrics=metrics, layers=a.layers, output_path=None, device="cpu",
                          **({"n_views": k} if k else {}))
        session.run("warmup", docs[:2])  # first-call costs (nlpaug import, kernels) out of the timing
        making = 0.0
        if k:  # the nlpaug part alone (Session.run makes the same views again, inside its own time)
            started = time.perf_counter()
            for d in docs:
                for j in range(k):
                    augment_text(d.text, view_seed(session.seed, d.doc_id, j))
            making = time.perf_counter() - started
        calls.update(n=0, rows=0)
        started = time.perf_counter()
        entry, _ = session.run("pydoc_topics", docs)
        seconds = time.perf_counter() - started
        rows.append((k, seconds, calls["rows"], entry, making))
    base = rows[0][1]
    print(f"{len(docs)} documents of pydoc_topics, all-MiniLM-L6-v2, --layers {a.layers}, CPU")
    print(f"{'metrics':<40} {'views':>5} {'sequences forwarded':>20} {'seconds':>8} {'ratio':>6} {'making views':>13}")
    for k, seconds, n_rows, entry, making in rows:
        name = "matrix_entropy" if not k else "matrix_entropy + lidar,dime,infonce,..."
        print(f"{name:<40} {k:>5} {n_rows:>20} {seconds:>8.2f} {seconds / base:>6.2f} {making:>12.2f}s")
    for k, _, _, entry, _ in rows[1:]:
        print(f"K = {k}: lidar {entry['lidar']:.4f}  dime {entry['dime']:.4f}  infonce {entry['infonce']:.4f}  "
              f"(last layer, {entry['lidar_n_documents']} documents)")


if __name__ == "__main__":
    main()
