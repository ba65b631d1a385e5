"""Command line: argument parsing → `matrixeval.evaluate` and friends. No evaluation logic lives here."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence

from .errors import Interrupted, MatrixEvalError
from .models.args import PASS_THROUGH


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def add_model_and_task_args(p: argparse.ArgumentParser) -> None:
    """The flags shared by `run` and every experiment."""
    p.add_argument("--model_args", default=None,
                   help="pretrained=ID_OR_PATH[,revision=R][,dtype=auto|float32|bfloat16|float16][,device_map=auto]"
                        "[,trust_remote_code=true][,adapter=PEFT_PATH][,tokenizer=ID_OR_PATH]; passed to "
                        f"from_pretrained: {', '.join(PASS_THROUGH)}; any other key must be an attribute of the "
                        "model's config, which it overrides (e.g. sliding_window=512); an unknown key is an error; "
                        "default: the packaged all-MiniLM-L6-v2")
    p.add_argument("--tasks", default=None,
                   help="comma-separated: NAME, NAME=LOCAL_FILE[:FIELD] (a recipe on a local copy, or any new name for "
                        "a plain file), or a .jsonl/.json/.csv/.tsv/.parquet/.txt file (also .gz) or a folder saved "
                        "by datasets, or a task file (my_task.yaml; see --include_path) (default: the built-in offline "
                        "task pydoc_topics); `matrixeval ls` lists names")
    p.add_argument("--include_path", action="append", default=None, metavar="DIR",
                   help="a folder of task files (.yaml/.yml/.json, searched recursively) or one task file whose tasks "
                        "--tasks may name, as lm-eval's --include_path; repeat it or give a comma list")
    p.add_argument("--text_field", default=None,
                   help="field path of the text, e.g. text or choices.0.turns.0.content (overrides a recipe's text; "
                        "per task: --tasks NAME=FILE:FIELD)")
    p.add_argument("--txt_split", choices=("blank", "line", "wikitext"), default="blank",
                   help="how a .txt file is cut into documents: blank (paragraphs between blank lines, the default), "
                        "line (one per line), wikitext (one per ' = Title = ' article, as lm-eval's wikitext)")
    p.add_argument("--layers", default="last", help="last | all | comma-separated HF hidden-state indices (0 = embeddings, -1 = last)")
    p.add_argument("--batch_size", type=_batch_size, default=8, help="samples per forward pass, or auto (halve on out-of-memory)")
    p.add_argument("--max_length", type=_positive_int, default=2048, help="truncate texts to this many tokens (and the model's limit)")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N documents of each task")
    p.add_argument("--seed", type=int, default=1234, help="seed for bootstrap intervals, shuffles and random inits (default: 1234)")
    p.add_argument("--sample_size", type=_positive_int, default=None,
                   help="records drawn by the recipes that sample (wikipedia, openwebtext2 and their _reference "
                        "variants; default: 10000); other tasks ignore it")
    p.add_argument("--sample_seed", type=int, default=None,
                   help="seed of that draw, separate from --seed (default: 1234; 123 for the _reference variants, "
                        "as the papers' code)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--output_path", default="results", help="directory for results_<timestamp>.json (default: results)")
    p.add_argument("--store", default=None, help="directory for the per-sample store (default: OUTPUT/<model>/store); "
                                                 "put it on a shared filesystem for multi-node runs")
    p.add_argument("--exclude_bos", action="store_true", help="leave a leading BOS/CLS token out of the matrix")
    p.add_argument("--rolling", action="store_true",
                   help="loss and perplexity over every token of each document in lm-eval's rolling windows of "
                        "max_length tokens (loglikelihood_rolling), adding word_perplexity, byte_perplexity and "
                        "bits_per_byte; spectral metrics still read the first max_length tokens")
    p.add_argument("--min_tokens", type=_positive_int, default=None,
                   help="drop documents of fewer tokens (counted after tokenisation, special tokens included; "
                        "counted as too_short); default: the task's own min_tokens, else none")
    p.add_argument("--fixed_tokens", type=_positive_int, default=None, metavar="L",
                   help="cut every document to exactly L tokens (sets --max_length L) and drop shorter ones "
                        "(counted as too_short), so models, even with other tokenizers, are compared on equal N")
    p.add_argument("--caveat", action="append", default=None, metavar="KEY=VALUE",
                   help="set a warning threshold, repeatable: min_samples, max_truncated_fraction, "
                        "min_entropy_ceiling, perplexity_top_fraction, perplexity_max_share, max_unchanged_fraction, "
                        "max_arm_mismatch_fraction, max_timing_spread (defaults in the README)")
    p.add_argument("--on_error", choices=("skip", "fail"), default="fail", help="malformed records: skip (counted) or fail")
    p.add_argument("--dist_timeout", type=_seconds, default=600.0,
                   help="under torchrun: seconds a rank may go without a heartbeat (stalled, e.g. SIGSTOP or a hung "
                        "device, or dead) before the other ranks stop with one line naming it; a rank that is only "
                        "slower is waited for (default: 600)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    add_definition_args(p)


def add_definition_args(p: argparse.ArgumentParser) -> None:
    """The flags that choose each metric's definition (shared by `run` and every experiment; the results
    config's ``conventions`` records the one each value follows)."""
    p.add_argument("--convention", default="wei2024", choices=("wei2024", "layer_by_layer", "garrido", "reptrix"),
                   help="definition of prompt_entropy and dataset_entropy(_last): wei2024 (default; no clamp, "
                        "÷ log D: prompt_entropy = matrix_entropy) or layer_by_layer (Skean et al.: Gram matrix "
                        "clamped to >= 0, ÷ min(log N, log D)). RankMe's garrido and reptrix are the metrics "
                        "rankme and rankme_reptrix. config.conventions records every value's")
    p.add_argument("--lbl_normalization", default=None,
                   choices=("maxEntropy", "logN", "logD", "logNlogD", "raw", "length"),
                   help="normalisation of prompt/dataset entropy (default: the convention's) and of lidar/dime "
                        "(default: maxEntropy, as Layer by Layer)")
    p.add_argument("--renyi_alpha", type=float, default=None,
                   help="Rényi α of prompt/dataset entropy, lidar and dime (default 1)")
    p.add_argument("--alpha_req_window", default=None, metavar="START:STOP",
                   help="α-ReQ's eigenvalue index window, 0-based [START, STOP) (default 10:100, as reptrix)")
    p.add_argument("--n_views", type=int, default=None,
                   help="lidar, dime, infonce: seeded augmented views per document, one extra forward pass each "
                        "(default 8, as Layer by Layer; dime and infonce use views 0 and 1)")
    p.add_argument("--infonce_temperature", type=float, default=None,
                   help="InfoNCE's temperature (default 0.1)")
    p.add_argument("--dime_iters", type=int, default=None,
                   help="DiME's permutations, seeded by --seed (default 10)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matrixeval", description="Intrinsic evaluation of language models by "
                                     "the spectra of their hidden states (matrix entropy, effective rank, nuclear norm).")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="evaluate a model on tasks (default: packaged MiniLM on a built-in offline task)")
    add_model_and_task_args(run)
    run.add_argument("--metrics", default=None, help="comma-separated: matrix_entropy,effective_rank,nuclear_norm,"
                     "nuclear_norm_exact,rankme,rankme_reptrix,effective_rank_sigma,alpha_req,prompt_entropy,curvature,"
                     "dataset_entropy,dataset_entropy_last,lidar,dime,infonce,infonce_mi_lower_bound,loss,perplexity,"
                     "diff_erank, and with --rolling "
                     "word_perplexity,byte_perplexity,bits_per_byte (`matrixeval ls`; default: matrix_entropy + "
                     "loss,perplexity when the model has an LM head, and in rolling mode the three with perplexity; "
                     "with no --model_args also diff_erank). diff_erank runs the "
                     "seeded random init in eval mode (no dropout), a deliberate departure from the authors' "
                     "diff_erank_dataset.py, which never calls .eval(): there dropout is active and its values "
                     "change from run to run")
    run.add_argument("--log_samples", action="store_true", help="also write samples_<task>_<timestamp>.jsonl")
    ls = sub.add_parser("ls", help="list tasks and metrics, one line each with what they read")
    ls.add_argument("--include_path", action="append", default=None, metavar="DIR",
                    help="also list the tasks of the task files in DIR (or one task file); repeat it or give a "
                         "comma list")
    _add_compare(sub)
    _add_experiments(sub)
    return parser


def _add_compare(sub) -> None:
    from .experiments import load_module

    compare = load_module("matrixeval.experiments.compare")
    if compare is None:
        return
    p = sub.add_parser("compare", help=compare.DESCRIPTION, description=compare.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_arguments(p)
    p.set_defaults(handler=compare.run)


def _add_experiments(sub) -> None:
    from .experiments import EXPERIMENTS, load_experiment

    exp = sub.add_parser("experiment", help="the papers' analyses, one command each")
    names = exp.add_subparsers(dest="experiment", metavar="NAME")
    for name in EXPERIMENTS:
        module = load_experiment(name)
        if module is None:
            continue
        p = names.add_parser(name, help=module.DESCRIPTION, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        if getattr(module, "SHARED_ARGS", True):
            add_model_and_task_args(p)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)


def cmd_run(a: argparse.Namespace) -> int:
    from .evaluator import evaluate
    from .report.tables import results_markdown

    out = evaluate(
        model_args=a.model_args, tasks=a.tasks, text_field=a.text_field, txt_split=a.txt_split, metrics=a.metrics, layers=a.layers,
        batch_size=a.batch_size, max_length=a.max_length, limit=a.limit, seed=a.seed, device=a.device,
        output_path=a.output_path, log_samples=a.log_samples, exclude_bos=a.exclude_bos, on_error=a.on_error,
        store=a.store, sample_size=a.sample_size, sample_seed=a.sample_seed, rolling=a.rolling,
        dist_timeout=a.dist_timeout, caveats=a.caveat, min_tokens=a.min_tokens, fixed_tokens=a.fixed_tokens,
        convention=a.convention, lbl_normalization=a.lbl_normalization, renyi_alpha=a.renyi_alpha,
        alpha_req_window=a.alpha_req_window, n_views=a.n_views, infonce_temperature=a.infonce_temperature,
        dime_iters=a.dime_iters, include_path=a.include_path,
    )
    if out is not None:
        print(results_markdown(out))
        print(f"\nresults written to {out['results_path']}", file=sys.stderr)
        if out.get("layers_plot"):
            print(f"layer profiles drawn in {out['layers_plot']}", file=sys.stderr)
    return 0


def cmd_ls(a: argparse.Namespace) -> int:
    from .data import list_tasks, task_names
    from .data.taskfile import include_tasks
    from .metric_info import METRICS

    builtins = list_tasks()
    user = include_tasks(a.include_path, reserved=task_names())
    tasks = sorted([*builtins, *user.values()], key=lambda t: t.name)
    print("tasks:")
    width = max(len(t.name) for t in tasks)
    for t in tasks:
        where = "built-in" if t.builtin else (t.hf_path or t.local_path or "NAME=LOCAL_FILE")
        mark = f" [user task, {t.file}]" if t.name in user else ""
        print(f"  {t.name:<{width}} reads {', '.join(t.fields):<40} from {where}: {t.description}{mark}")
    print("metrics:")
    width = max(len(name) for name in METRICS)
    for m in METRICS.values():
        arrow = {True: "higher is better", False: "lower is better"}.get(m.higher_is_better, "no better/worse")
        scope = "" if m.scope == "per sample" else f" ({m.scope}: {m.aggregate})"
        print(f"  {m.name:<{width}} reads {m.reads:<55} {arrow}: {m.description}{scope}")
    return 0


COMMANDS = {"run": cmd_run, "ls": cmd_ls}


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; user errors are one `matrixeval: error: ...` line (exit 2), Ctrl-C one line (exit 130)."""
    try:
        return _main(argv)
    except Interrupted as err:
        print(f"matrixeval: interrupted: {err}", file=sys.stderr)
    except KeyboardInterrupt:
        print("matrixeval: interrupted; every sample stored so far is kept, and re-running the same command "
              "resumes from them", file=sys.stderr)
    return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if getattr(a, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if a.command not in ("ls", "compare"):
        # Our own progress bar (samples, tokens/s) is the one to watch; transformers' per-weight bar is noise.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    handler = getattr(a, "handler", None) or COMMANDS.get(a.command)
    if handler is None:
        parser.parse_args([a.command, "--help"])
    try:
        return handler(a)
    except MatrixEvalError as err:
        print(f"matrixeval: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk outside matrixeval's own writers (e.g. a library saving weights): one line, naming the file.
        where = repr(os.path.abspath(err.filename)) if err.filename else "a file"
        print(f"matrixeval: error: cannot write {where}: {err.strerror}; free space and re-run the same command "
              "(stored samples are reused)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
