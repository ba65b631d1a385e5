"""matrixeval on accelerator shapes: the engine vs a bare forward loop, and the metric core alone.

Run: .venv/bin/python benchmarks/bench_gpu.py [--quick] [--no_7b]         (on a CUDA machine)
     .venv/bin/python benchmarks/bench_gpu.py --device cpu --tiny           (the same code paths, tiny shapes)
Without CUDA and without `--device cpu` it prints one line and exits 0.

Models are Llama-shaped causal LMs built from a config, randomly initialised on the device, in bf16: ≈1B
(hidden 2048, 22 layers, vocab 32000) and, unless --no_7b or memory is short, a ≈7B-shaped stack (hidden 4096,
32 layers). Inputs are seeded random token ids (a random model has no use for real text; the cost of a batch
depends on its shape only). Everything is measured side by side in this one run; nothing is asserted:
  1. bare forward loop (logits) vs matrixeval's engine (hooks, entropy + nuclear norm + loss, the durable
     store, aggregation), last layer and all layers; and the peak device memory of each
     (torch.cuda.max_memory_allocated, reset before every measurement);
  2. the metric core alone: one batched call vs a loop over samples;
  3. float64 vs float32 Gram products: time and |error| in normalised entropy against an independent float64
     d×d reference, on a Gaussian and a rank-32 input;
  4. the N×N vs the d×d path per sample (float64 Gram + eigensolve each way), and the papers' reference
     formulation (d×d covariance, float32 SVD per sample) for the ratio to it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, device: torch.device) -> float:
    """Best wall time of fn() in seconds, after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def peak_of(fn, device: torch.device) -> float | None:
    """Peak allocated device memory (GiB) during fn(), or None off CUDA."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def gib(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:6.2f}"


# ---------------------------------------------------------------------------------------------------- models
SHAPES = {
    "llama-1B": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                     num_key_value_heads=4, vocab_size=32000),
    "llama-7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000),
}


def build(shape: str, device: torch.device, dtype: torch.dtype, max_positions: int):
    """A LoadedModel around a randomly initialised Llama-shaped causal LM, built directly on `device`."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from matrixeval.models import LoadedModel, default_model_path, parse_model_args

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())  # only its pad id is read: inputs are ids
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, args=parse_model_args(f"pretrained={shape}"), name=shape,
                       n_params=sum(p.numel() for p in model.parameters()), hidden_size=config.hidden_size,
                       num_hidden_layers=config.num_hidden_layers, has_lm_head=True, device=device, dtype=dtype,
                       max_positions=max_positions, bos_token_id=None)


def random_items(n: int, length: int, vocab: int, seed: int = 0):
    from matrixeval.engine.batching import Encoded

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, min(vocab, 30000), (n, length), generator=g).tolist()
    return [Encoded(i, tuple(row), False) for i, row in enumerate(ids)]


def bare_loop(lm, items, batch_size: int) -> None:
    from matrixeval.engine.batching import collate, plan_batches

    with torch.inference_mode():
        for batch in plan_batches(items, batch_size):
            ids, mask, _ = collate([items[j] for j in batch], lm.tokenizer.pad_token_id, lm.device)
            lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def engine(lm, items, batch_size: int, layers: str, root: Path) -> None:
    """What `matrixeval run` does with a loaded model: run_task (store included) and the aggregation."""
    from matrixeval.engine.dist import World
    from matrixeval.engine.measure import MeasureConfig
    from matrixeval.engine.runner import BatchSizer, run_task
    from matrixeval.engine.store import ShardStore
    from matrixeval.models import resolve_layers
    from matrixeval.results import task_results

    layer_ids = resolve_layers(layers, lm.num_hidden_layers)
    cfg = MeasureConfig(tuple(layer_ids), True, False, frozenset())
    store = ShardStore(Path(tempfile.mkdtemp(dir=root)), {})
    run = run_task(lm, items, cfg, store, World(), BatchSizer.parse(batch_size))
    task_results(run.records, layers=layer_ids, metrics=["matrix_entropy", "nuclear_norm", "loss"],
                 hidden_size=lm.hidden_size, seed=0, load_skipped={}, n_resumed=0)


def engine_vs_bare(args, device: torch.device, root: Path) -> None:
    dtype = torch.float32 if args.tiny else torch.bfloat16
    shapes = ["tiny"] if args.tiny else ["llama-1B"] + ([] if args.no_7b else ["llama-7B"])
    cases = [(4, 64, 2)] if args.tiny else ([(16, 1024, 4)] if args.quick else [(32, 512, 4), (16, 1024, 4), (8, 4096, 2)])
    print("\n1. bare forward loop vs matrixeval engine (entropy + nuclear norm + loss, store, aggregation); "
          f"best of {args.repeats}, alternating; peak = max_memory_allocated")
    print(f"{'model':<10} {'params':>7} {'batch':>5} {'tokens':>6} {'layers':>6} | {'bare s':>8} {'ours s':>8} "
          f"{'ratio':>7} | {'bare GiB':>8} {'ours GiB':>8} {'+GiB':>6} {'1 batch hidden GiB':>18}")
    for shape in shapes:
        if shape == "llama-7B" and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if free < 40 * 2**30:
                print(f"llama-7B skipped: {free / 2**30:.0f} GiB free, needs ~40")
                continue
        lm = build(shape, device, dtype, max_positions=max(c[1] for c in cases))
        for batch, length, n_batches in cases:
            items = random_items(batch * n_batches, length, SHAPES[shape]["vocab_size"])
            for layers in ("last", "all"):
                bare_peak = peak_of(lambda: bare_loop(lm, items, batch), device)
                ours_peak = peak_of(lambda: engine(lm, items, batch, layers, root), device)  # also the warm-up
                bare = ours = math.inf
                for _ in range(args.repeats):
                    for which in ("bare", "ours"):
                        sync(device)
                        t0 = time.perf_counter()
                        bare_loop(lm, items, batch) if which == "bare" else engine(lm, items, batch, layers, root)
                        sync(device)
                        t = time.perf_counter() - t0
                        bare, ours = (min(bare, t), ours) if which == "bare" else (bare, min(ours, t))
                n_kept = 1 if layers == "last" else lm.num_hidden_layers + 1
                hidden = n_kept * batch * length * lm.hidden_size * dtype.itemsize / 2**30
                extra = None if bare_peak is None else ours_peak - bare_peak
                print(f"{shape:<10} {lm.n_params / 1e9:6.2f}B {batch:>5} {length:>6} {layers:>6} | {bare:8.3f} "
                      f"{ours:8.3f} {ours / bare:6.3f}x | {gib(bare_peak):>8} {gib(ours_peak):>8} {gib(extra):>6} "
                      f"{hidden:18.2f}")
        del lm
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- metric core
def reference_f64(h: torch.Tensor) -> torch.Tensor:
    """Normalised entropy from the d×d covariance in float64 (independent of matrixeval's code), per sample."""
    out = []
    for x in h:
        z = x.double() - x.double().mean(dim=0)
        z = z / z.norm(dim=1, keepdim=True)
        lam = torch.linalg.eigvalsh(z.T @ z / z.shape[0]).clamp(min=0)
        lam = lam / lam.sum()
        out.append(float(-torch.special.xlogy(lam, lam).sum() / math.log(x.shape[1])))
    return torch.tensor(out, dtype=torch.float64)  # on the CPU, like the values it is compared with


def hard_input(kind: str, b: int, n: int, d: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(0)
    if kind == "rank32":
        return torch.randn(b, n, 32, device=device, generator=g) @ torch.randn(b, 32, d, device=device, generator=g)
    return torch.randn(b, n, d, device=device, generator=g) * torch.rand(d, device=device, generator=g) * 3


def metric_core(args, device: torch.device) -> None:
    from matrixeval import spectral_metrics
    from matrixeval.experiments.timing import reference_entropy

    b, n, d = (4, 64, 96) if args.tiny else (16, 1024, 2048)
    h = (torch.randn(b, n, d, device=device) * 3).to(torch.float32 if args.tiny else torch.bfloat16)
    mask = torch.ones(b, n, dtype=torch.bool, device=device)
    batched = best_of(lambda: spectral_metrics(h, mask), args.repeats, device)
    loop = best_of(lambda: [spectral_metrics(h[i]) for i in range(b)], args.repeats, device)
    print(f"\n2. metric core, {b} samples of N={n}, d={d} ({h.dtype}): one batched call {batched * 1e3:.1f} ms, "
          f"loop over samples {loop * 1e3:.1f} ms, loop/batched {loop / batched:.2f}x")

    print("\n3. float64 vs float32 Gram product (float64 eigensolve both), per batch; |error| in normalised entropy "
          "against a float64 d×d reference (max over samples)")
    print(f"{'input':<9} {'B':>3} {'N':>5} {'d':>5} | {'f64 ms':>8} {'f32 ms':>8} {'f64/f32':>7} | {'|f64 err|':>9} "
          f"{'|f32 err|':>9}")
    for kind in ("gaussian", "rank32"):
        for bb, nn, dd in ([(2, 64, 96)] if args.tiny else [(8, 512, 2048), (8, 2048, 4096)]):
            x = hard_input(kind, bb, nn, dd, device)
            ref = reference_f64(x)
            t64 = best_of(lambda: spectral_metrics(x), args.repeats, device)
            t32 = best_of(lambda: spectral_metrics(x, gram_dtype=torch.float32), args.repeats, device)
            e64 = (spectral_metrics(x).matrix_entropy.cpu() - ref).abs().max().item()
            e32 = (spectral_metrics(x, gram_dtype=torch.float32).matrix_entropy.cpu() - ref).abs().max().item()
            print(f"{kind:<9} {bb:>3} {nn:>5} {dd:>5} | {t64 * 1e3:8.1f} {t32 * 1e3:8.1f} {t64 / t32:6.2f}x | "
                  f"{e64:9.1e} {e32:9.1e}")

    ns, ds = ([32, 64, 128], [64, 128]) if args.tiny else ([512, 2048] if args.quick else [512, 2048, 8192],
                                                            [2048, 4096] if args.quick else [2048, 4096, 8192])
    print("\n4. one sample: N×N path (ZZᵀ) vs d×d path (ZᵀZ), float64 Gram + eigvalsh; matrixeval (picks the "
          "smaller); the papers' reference (d×d covariance, float32 SVD)")
    print(f"{'N':>5} {'d':>5} | {'N×N ms':>9} {'d×d ms':>9} {'ours ms':>9} {'papers ms':>10} | {'papers/ours':>11}")
    for nn in ns:
        for dd in ds:
            z = torch.nn.functional.normalize(torch.randn(nn, dd, device=device, dtype=torch.float64), dim=1)
            small = best_of(lambda: torch.linalg.eigvalsh(z @ z.T), 1, device)
            large = best_of(lambda: torch.linalg.eigvalsh(z.T @ z), 1, device)
            x = z.float()
            ours = best_of(lambda: spectral_metrics(x), args.repeats, device)
            papers = best_of(lambda: reference_entropy(x), 1, device)
            print(f"{nn:>5} {dd:>5} | {small * 1e3:9.1f} {large * 1e3:9.1f} {ours * 1e3:9.1f} {papers * 1e3:10.1f} | "
                  f"{papers / ours:10.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (cpu only makes sense with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: checks that every code path runs")
    parser.add_argument("--quick", action="store_true", help="fewer shapes (one engine case, N, d ∈ {512..4096})")
    parser.add_argument("--no_7b", action="store_true", help="skip the ≈7B-shaped model")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; skipped (use --device cpu --tiny to exercise the code paths)")
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {'tiny shapes' if args.tiny else 'bf16 models'}")
    with tempfile.TemporaryDirectory() as root:
        engine_vs_bare(args, device, Path(root))
    metric_core(args, device)


if __name__ == "__main__":
    sys.exit(main())
