"""Task files: a task as a small YAML (or JSON) file, with lm-evaluation-harness's keys where they mean the same.

A task file names its data (``dataset_path`` and friends, or ``builtin_records``) and how a record becomes the
text the model reads (``doc_to_text``: a field path ``a.b.0.c``, a Jinja2 template over the record, or
``!function NAME`` from :data:`FUNCTIONS`). The built-in tasks are such files (``data/tasks/*.yaml``);
``--include_path DIR`` adds a user's own, and a task file given in ``--tasks`` is read directly. Every
problem with a file is one :class:`MatrixEvalError` line naming the file and the key. The README's "Task
files" section lists every key.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import MatrixEvalError
from . import fields as f
from .builtin import pydoc_topic_records
from .fields import MissingField, get_path
from .readers import FORMATS, TXT_SPLITS
from .registry import TASK_NAME, TaskRecipe
from .wikitext import wikitext_page, wikitext_text

__all__ = ["FUNCTIONS", "TASK_FILE_SUFFIXES", "IGNORED_KEYS", "KEYS", "FunctionRef", "is_task_file",
           "read_task_file", "include_tasks", "BUILTIN_TASKS_DIR"]

logger = logging.getLogger(__name__)

TASK_FILE_SUFFIXES = (".yaml", ".yml", ".json")
BUILTIN_TASKS_DIR = Path(__file__).with_name("tasks")

# lm-eval's keys that mean here what they mean there, then matrixeval's own.
LM_EVAL_KEYS = ("task", "dataset_path", "dataset_name", "dataset_kwargs", "test_split", "validation_split",
                "training_split", "doc_to_text", "description", "output_type", "metric_list", "include")
OWN_KEYS = ("doc_to_context", "doc_to_qa", "builtin_records", "fields", "metrics", "min_tokens", "max_tokens",
            "sample_size", "sample_seed", "txt_split", "count_text")
KEYS = LM_EVAL_KEYS + OWN_KEYS
# lm-eval keys matrixeval has no use for: accepted, and named in one warning per file.
IGNORED_KEYS = ("num_fewshot", "fewshot_split", "fewshot_config", "fewshot_delimiter", "target_delimiter",
                "doc_to_target", "doc_to_choice", "doc_to_image", "doc_to_audio", "generation_kwargs", "repeats",
                "filter_list", "should_decontaminate", "doc_to_decontamination_query", "metadata", "group", "tag",
                "task_alias", "group_alias", "process_docs", "process_results", "unsafe_code", "custom_dataset",
                "gen_prefix", "use_prompt", "class")
OUTPUT_TYPES = ("loglikelihood_rolling", "loglikelihood", "multiple_choice", "generate_until")
# HF `datasets` builder names lm-eval files use as dataset_path with local data_files.
BUILDERS = ("json", "csv", "parquet", "text", "arrow")
_SPLIT_KEYS = ("test_split", "validation_split", "training_split")
_MAX_INCLUDE_DEPTH = 10


@dataclass(frozen=True)
class FunctionRef:
    """``!function NAME`` in a task file (in JSON: the string ``"!function NAME"``)."""

    name: str


@dataclass(frozen=True)
class _Function:
    kind: str  # "text" (record -> str | None), "qa" (record -> (question, answer) | None), "records" (() -> list)
    fn: Callable
    doc: str


def _qa_text(qa: Callable, sep: str) -> Callable:
    return f.from_qa(qa, sep)


# The functions a task file may name with `!function NAME`: texts, (question, answer) splits and built-in records
# whose rules need code (a record layout that varies, a choice picked by a label). The README lists them.
FUNCTIONS: dict[str, _Function] = {
    "pydoc_topic_records": _Function("records", pydoc_topic_records, "paragraphs of 40+ words of Python's help topics"),
    "dolly_text": _Function("text", f.dolly_text, "the context; None (record dropped) when it is empty"),
    "dolly_qa": _Function("qa", f.dolly_qa, "(instruction, response)"),
    "hh_rlhf_qa": _Function("qa", f.hh_rlhf_qa, "(dialogue up to the last 'Assistant:', the reply after it)"),
    "openbookqa_qa": _Function("qa", f.openbookqa_qa, "(question_stem, the answerKey's choice or answer_text)"),
    "openbookqa_text": _Function("text", _qa_text(f.openbookqa_qa, " "), "openbookqa_qa joined by a space"),
    "winogrande_qa": _Function("qa", f.winogrande_qa, "(sentence up to the blank filled, the rest)"),
    "winogrande_text": _Function("text", f.winogrande_text, "the sentence with the correct option in the blank"),
    "piqa_qa": _Function("qa", f.piqa_qa, "(goal, the labelled solution)"),
    "piqa_text": _Function("text", _qa_text(f.piqa_qa, " "), "piqa_qa joined by a space"),
    "openorca_qa": _Function("qa", f.openorca_qa, "(question, response)"),
    "openorca_system_qa": _Function("qa", f.openorca_system_qa, "(system prompt + question, response)"),
    "openorca_text": _Function("text", _qa_text(f.openorca_system_qa, "\n"),
                               "system prompt, question, response: the non-empty ones joined by newlines"),
    "alpaca_qa": _Function("qa", f.alpaca_qa, "(instruction + input, output)"),
    "alpaca_text": _Function("text", _qa_text(f.alpaca_qa, "\n"), "alpaca_qa's non-empty parts joined by newlines"),
    "wizard_qa": _Function("qa", f.wizard_qa, "(instruction, output)"),
    "wizard_text": _Function("text", _qa_text(f.wizard_qa, "\n"), "wizard_qa's non-empty parts joined by a newline"),
    "alpaca_eval_qa": _Function("qa", f.alpaca_eval_qa, "(instruction, output)"),
    "alpaca_eval_text": _Function("text", _qa_text(f.alpaca_eval_qa, "\n"),
                                  "alpaca_eval_qa's non-empty parts joined by a newline"),
    "arena_hard_text": _Function("text", f.arena_hard_text, "the first turn's content (or a flat prompt)"),
    "wikitext_text": _Function("text", wikitext_text, "the page through lm-eval 0.4.13's wikitext_detokenizer"),
    "wikitext_page": _Function("text", wikitext_page, "the page as stored (`page`, or `text` of a .txt article)"),
}


class _Loader(yaml.SafeLoader):
    """SafeLoader plus lm-eval's ``!function`` tag (here a name from FUNCTIONS, never code from a file)."""


_Loader.add_constructor("!function", lambda loader, node: FunctionRef(str(loader.construct_scalar(node)).strip()))


class _TaskFileError(MatrixEvalError):
    pass


def _fail(path: Path, key: str | None, message: str) -> _TaskFileError:
    return _TaskFileError(f"task file {path}: {key + ': ' if key else ''}{message}")


def is_task_file(path: str | os.PathLike) -> bool:
    """Whether `path` names a task file: a .yaml/.yml file, or a .json file holding one object with a string
    ``task`` (a .json data file holds records)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return True
    if suffix != ".json" or not p.is_file() or p.stat().st_size > 1_000_000:
        return False
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError):
        return False
    return isinstance(data, dict) and isinstance(data.get("task"), str)


def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, None, "not found; check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(path, None, f"cannot be read ({type(err).__name__}: {err}); check the file") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader with one extra tag
    except json.JSONDecodeError as err:
        raise _fail(path, None, f"invalid JSON at line {err.lineno} column {err.colno} ({err.msg})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _fail(path, None, f"invalid YAML{where} ({problem})") from None
    except RecursionError:
        raise _fail(path, None, "nested too deeply to read") from None
    if not isinstance(data, dict):
        raise _fail(path, None, f"expected a mapping of keys (task: ..., doc_to_text: ...), got "
                                f"{type(data).__name__}")
    return {str(k): _function_strings(v) for k, v in data.items()}


def _function_strings(value: Any) -> Any:
    """JSON has no tags: ``"!function NAME"`` there means what the YAML tag means."""
    if isinstance(value, str) and value.startswith("!function "):
        return FunctionRef(value.removeprefix("!function ").strip())
    if isinstance(value, list):
        return [_function_strings(v) for v in value]
    return value


def _with_includes(path: Path, depth: int = 0) -> dict[str, Any]:
    """The file's keys over those of the file it ``include``s (lm-eval's variants), relative to its folder."""
    data = _parse(path)
    base = data.pop("include", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise _fail(path, "include", f"expected the path of a task file, got {base!r}")
    if depth >= _MAX_INCLUDE_DEPTH:
        raise _fail(path, "include", f"more than {_MAX_INCLUDE_DEPTH} nested includes (a cycle?)")
    target = Path(base) if Path(base).is_absolute() else path.parent / base
    if not target.is_file():
        raise _fail(path, "include", f"{str(target)!r} not found; give a path relative to this file's folder")
    merged = _with_includes(target, depth + 1)
    merged.pop("task", None)  # a variant names its own task
    merged.update(data)
    return merged


def _check_keys(path: Path, data: Mapping[str, Any]) -> None:
    unknown = [k for k in data if k not in KEYS and k not in IGNORED_KEYS]
    rolling_target = data.get("output_type") == "loglikelihood_rolling" and data.get("doc_to_text", "") == ""
    ignored = [k for k in data if k in IGNORED_KEYS and not (k == "doc_to_target" and rolling_target)]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, KEYS + IGNORED_KEYS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the keys are: {', '.join(KEYS)}"
        raise _fail(path, key, f"unknown key; {hint}")
    if ignored and _once(path, "ignored"):
        logger.warning("task file %s: ignoring lm-eval keys matrixeval does not use: %s", path, ", ".join(ignored))


_WARNED: set[tuple[str, str]] = set()


def _once(path: Path, what: str) -> bool:
    """True the first time a file's warning of this kind is due (a file read twice is warned about once)."""
    key = (str(path.resolve()), what)
    if key in _WARNED:
        return False
    _WARNED.add(key)
    return True


def _string(path: Path, data: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _fail(path, key, f"expected a non-empty string, got {value!r}")
    return value


def _int(path: Path, data: Mapping[str, Any], key: str, *, minimum: int | None = 1) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        want = "an integer" if minimum is None else f"an integer of at least {minimum}"
        raise _fail(path, key, f"expected {want}, got {value!r}")
    return value


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _jinja_env():
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    # As lm-eval renders its templates (an undefined name is an error, a trailing newline is kept), in Jinja's
    # sandbox: a task file from elsewhere can format a record, not reach into Python.
    return SandboxedEnvironment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined,
                                keep_trailing_newline=True)


def _template(path: Path, key: str, source: str) -> tuple[Callable, tuple[str, ...]]:
    import jinja2
    from jinja2 import meta

    env = _jinja_env()
    try:
        template = env.from_string(source)
        names = tuple(sorted(meta.find_undeclared_variables(env.parse(source)) - {"doc"}))
    except jinja2.TemplateSyntaxError as err:
        raise _fail(path, key, f"Jinja2 template error at line {err.lineno} ({err.message})") from None

    def render(record: Mapping[str, Any]) -> str:
        try:
            return template.render({"doc": record, **record})
        except jinja2.UndefinedError as err:
            raise MissingField(f"{err.message} in {key}'s template") from None
        except jinja2.TemplateError as err:
            raise ValueError(f"{key}'s template: {err}") from None

    return render, names


def _field_path(name: str) -> Callable:
    def read(record: Mapping[str, Any]) -> Any:
        return get_path(record, name)

    return read


def _text_spec(path: Path, key: str, value: Any, kind: str = "text") -> tuple[Callable, tuple[str, ...]]:
    """A key whose value is a field path, a template or ``!function NAME``: the function and the fields it reads."""
    if isinstance(value, FunctionRef):
        return _function(path, key, value, kind), ()
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, f"expected a field path (text, a.b.0.c), a Jinja2 template ('{{{{question}}}} "
                               f"{{{{answer}}}}') or !function NAME, got {value!r}")
    if _is_template(value):
        return _template(path, key, value)
    return _field_path(value.strip()), (value.strip().split(".")[0],)


def _function(path: Path, key: str, ref: FunctionRef, kind: str) -> Callable:
    entry = FUNCTIONS.get(ref.name)
    if entry is None or entry.kind != kind:
        names = [n for n, e in FUNCTIONS.items() if e.kind == kind]
        close = difflib.get_close_matches(ref.name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _fail(path, key, f"no {kind} function {ref.name!r}; {hint}task files may name: {', '.join(names)}")
    return entry.fn


def _qa(path: Path, value: Any) -> tuple[Callable, tuple[str, ...]]:
    if isinstance(value, FunctionRef):
        return _function(path, "doc_to_qa", value, "qa"), ()
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(path, "doc_to_qa", f"expected [QUESTION, ANSWER] (each a field path or a template) or "
                                       f"!function NAME, got {value!r}")
    (question, q_fields), (answer, a_fields) = (_text_spec(path, "doc_to_qa", v) for v in value)

    def to_qa(record: Mapping[str, Any]) -> tuple[str, str]:
        return question(record), answer(record)

    return to_qa, q_fields + a_fields


def _split(path: Path, data: Mapping[str, Any]) -> str | None:
    for key in _SPLIT_KEYS:  # lm-eval evaluates the test split when there is one, else validation
        value = _string(path, data, key)
        if value is not None:
            return value
    return None


def _data_file(path: Path, data: Mapping[str, Any], split: str | None) -> str | None:
    """The one data file of `dataset_kwargs.data_files` for the split (None when none is given)."""
    kwargs = data.get("dataset_kwargs")
    if kwargs is None:
        return None
    if not isinstance(kwargs, dict):
        raise _fail(path, "dataset_kwargs", f"expected a mapping (data_files: ...), got {kwargs!r}")
    other = sorted(set(kwargs) - {"data_files"})
    if other and _once(path, "dataset_kwargs"):
        logger.warning("task file %s: ignoring dataset_kwargs matrixeval does not use: %s", path, ", ".join(other))
    files = kwargs.get("data_files")
    if files is None:
        return None
    if isinstance(files, dict):
        if not files:
            raise _fail(path, "dataset_kwargs.data_files", "is empty; give {test: FILE}")
        pick = split if split in files else next((s for s in ("test", "validation", "train") if s in files),
                                                 next(iter(files)) if len(files) == 1 else None)
        if pick is None:
            raise _fail(path, "dataset_kwargs.data_files",
                        f"has splits {', '.join(map(str, files))} and none is {split or 'test, validation or train'}; "
                        "set test_split to one of them")
        files = files[pick]
    if isinstance(files, list) and len(files) == 1:
        files = files[0]
    if not isinstance(files, str) or not files.strip():
        raise _fail(path, "dataset_kwargs.data_files", f"expected one file per split, got {files!r}")
    return files


def _local(path: Path, name: str, base: str | None = None) -> Path | None:
    """`name` as a local path: absolute, else under `base` (a local dataset_path), the task file's folder or the
    current folder, the first that exists."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.exists() else None
    for folder in (base, path.parent, Path.cwd()):
        if folder is not None and (Path(folder) / candidate).exists():
            return Path(folder) / candidate
    return None


def _location(path: Path, data: Mapping[str, Any], local: bool = True) -> dict[str, Any]:
    """Where the records come from: builtin, local_path, or hf_path (+ hf_name, split, data_files). `local`
    False (the shipped built-ins): dataset_path is a hub id whatever folders the current one holds."""
    split = _split(path, data)
    out: dict[str, Any] = {"split": split or "train"}
    records = data.get("builtin_records")
    if records is not None:
        if not isinstance(records, FunctionRef):
            raise _fail(path, "builtin_records", f"expected !function NAME, got {records!r}")
        out["builtin"] = _function(path, "builtin_records", records, "records")
        return out
    dataset = _string(path, data, "dataset_path")
    name = _string(path, data, "dataset_name")
    data_file = _data_file(path, data, split)
    if dataset is None:
        if data_file is None:
            return out  # data comes with the spec: NAME=LOCAL_FILE
        dataset = "json"
    local_dataset = _local(path, dataset) if local and dataset not in BUILDERS else None
    if data_file is not None:
        found = _local(path, data_file, str(local_dataset) if local_dataset and local_dataset.is_dir() else None)
        if found is not None:
            out["local_path"] = str(found)
            if dataset == "text":
                out["txt_split"] = "line"  # datasets' text builder: one record per line
            return out
        if dataset in BUILDERS or local_dataset is not None:
            raise _fail(path, "dataset_kwargs.data_files", f"{data_file!r} not found (looked beside the task file "
                                                           "and in the current folder)")
        out.update(hf_path=dataset, hf_name=name, data_files=data_file)
        return out
    if dataset in BUILDERS:
        raise _fail(path, "dataset_path", f"{dataset!r} is a datasets builder; name the file in "
                                          "dataset_kwargs: {data_files: FILE}")
    if local_dataset is not None:
        out["local_path"] = str(local_dataset)
    elif _looks_local(dataset):
        raise _fail(path, "dataset_path", f"{dataset!r} not found (looked beside the task file and in the current "
                                          "folder); a hub id is OWNER/NAME")
    else:
        out.update(hf_path=dataset, hf_name=name)
    return out


def _looks_local(name: str) -> bool:
    """A path, not a hub id: a data file's extension, a leading ./ ../ / or ~, or more than one '/'."""
    suffix = Path(name.removesuffix(".gz")).suffix.lower()
    return (suffix in FORMATS or name.startswith((".", "/", "~")) or name.count("/") > 1
            or os.sep != "/" and os.sep in name)


def _metrics(path: Path, data: Mapping[str, Any]) -> tuple[str, ...] | None:
    from ..metric_info import METRICS

    if "metrics" in data:
        value = data["metrics"]
        names = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise _fail(path, "metrics", f"expected a list of metric names, got {value!r}")
        for n in names:
            if n not in METRICS:
                close = difflib.get_close_matches(n, list(METRICS), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise _fail(path, "metrics", f"unknown metric {n!r}; {hint}valid: {', '.join(METRICS)}")
        return tuple(dict.fromkeys(n.strip() for n in names))
    items = data.get("metric_list")
    if items is None:
        return None
    if not isinstance(items, list):
        raise _fail(path, "metric_list", f"expected a list of {{metric: NAME}}, got {items!r}")
    names = []
    for item in items:
        name = item.get("metric") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise _fail(path, "metric_list", f"expected entries {{metric: NAME}}, got {item!r}")
        names.append(name)
    used = tuple(dict.fromkeys(n for n in names if n in METRICS))
    others = [n for n in names if n not in METRICS]
    if others and _once(path, "metric_list"):
        logger.warning("task file %s: metric_list: matrixeval does not compute %s%s", path, ", ".join(others),
                       f"; measuring {', '.join(used)}" if used else "")
    return used or None


def read_task_file(path: str | os.PathLike) -> TaskRecipe:
    """The recipe a task file defines; a MatrixEvalError naming the file and the key for anything wrong in it."""
    path = Path(path)
    data = _with_includes(path)
    _check_keys(path, data)
    name = data.get("task")
    if name is None:
        raise _fail(path, "task", "missing; every task file names its task (task: my_task)")
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise _fail(path, "task", f"expected a name of letters, digits, '_' and '-' (starting with a letter or "
                                  f"'_'), got {name!r}")
    output_type = _string(path, data, "output_type")
    if output_type is not None and output_type not in OUTPUT_TYPES:
        close = difflib.get_close_matches(output_type, OUTPUT_TYPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _fail(path, "output_type", f"unknown {output_type!r}; {hint}use one of {', '.join(OUTPUT_TYPES)}")
    to_text = read = None
    shown: tuple[str, ...] = ()
    if output_type == "loglikelihood_rolling" and data.get("doc_to_text", "") == "" and "doc_to_target" in data:
        # lm-eval's perplexity tasks roll over doc_to_target and leave doc_to_text empty: that target is the text
        to_text, shown = _text_spec(path, "doc_to_target", data["doc_to_target"])
    elif "doc_to_text" in data:
        to_text, shown = _text_spec(path, "doc_to_text", data["doc_to_text"])
    to_context = None
    if "doc_to_context" in data:
        to_context, context_fields = _text_spec(path, "doc_to_context", data["doc_to_context"])
        shown = context_fields + shown
    count_text = None
    if "count_text" in data:  # rolling mode: the text whose words and bytes the perplexities count
        count_text, _ = _text_spec(path, "count_text", data["count_text"])
    to_qa = None
    if "doc_to_qa" in data:
        to_qa, qa_fields = _qa(path, data["doc_to_qa"])
        shown = shown or qa_fields
    txt_split = _string(path, data, "txt_split")
    if txt_split is not None and txt_split not in TXT_SPLITS:
        raise _fail(path, "txt_split", f"unknown {txt_split!r}; use one of {', '.join(TXT_SPLITS)}")
    min_tokens, max_tokens = _int(path, data, "min_tokens"), _int(path, data, "max_tokens")
    if min_tokens is not None and max_tokens is not None and min_tokens > max_tokens:
        raise _fail(path, "min_tokens", f"{min_tokens} is more than max_tokens {max_tokens}")
    location = _location(path, data, local=path.parent.resolve() != BUILTIN_TASKS_DIR.resolve())
    if txt_split is not None:
        location["txt_split"] = txt_split
    read = data.get("fields")
    if read is not None:
        if isinstance(read, str):
            read = [read]
        if not isinstance(read, list) or not read or not all(isinstance(x, str) and x for x in read):
            raise _fail(path, "fields", f"expected a list of field names, got {data['fields']!r}")
        shown = tuple(read)
    return TaskRecipe(
        name=name,
        description=_string(path, data, "description") or f"task file {path.name}",
        fields=tuple(dict.fromkeys(shown)) or ((("(template)",) if "doc_to_text" in data else ("text",))),
        to_text=to_text,
        to_qa=to_qa,
        to_context=to_context,
        min_tokens=min_tokens,
        max_tokens=max_tokens,
        rolling=output_type == "loglikelihood_rolling",
        count_text=count_text,
        sample_size=_int(path, data, "sample_size"),
        sample_seed=_int(path, data, "sample_seed", minimum=None),
        metrics=_metrics(path, data),
        file=str(path),
        **location,
    )


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TASK_FILE_SUFFIXES)


def split_paths(paths: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    """``--include_path`` values (repeated, or comma-separated) as paths."""
    if paths is None:
        return []
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return [Path(p.strip()) for item in items for p in str(item).split(",") if p.strip()]


def include_tasks(paths: str | os.PathLike | Sequence[str | os.PathLike] | None,
                  reserved: Iterable[str] = ()) -> dict[str, TaskRecipe]:
    """The tasks of every task file in the folders (searched recursively) or files of `paths`, by name.

    In a folder, a .json file that holds no task (a data file) is passed over. A name given twice, or the name
    of a built-in (`reserved`), is an error naming both places."""
    reserved = set(reserved)
    found: dict[str, TaskRecipe] = {}
    for root in split_paths(paths):
        if not root.exists():
            raise MatrixEvalError(f"include_path {str(root)!r} not found; give a folder of task files (or one file)")
        files = [root] if root.is_file() else _files_under(root)
        for file in files:
            if root.is_dir() and file.suffix.lower() == ".json" and not is_task_file(file):
                continue
            recipe = read_task_file(file)
            if recipe.name in reserved:
                raise _fail(file, "task", f"{recipe.name!r} is the name of a built-in task; give yours another name")
            if recipe.name in found and Path(found[recipe.name].file or "").resolve() != file.resolve():
                raise _fail(file, "task", f"{recipe.name!r} is defined in {found[recipe.name].file} too; "
                                          "give each task its own name")
            found[recipe.name] = recipe
    return found
