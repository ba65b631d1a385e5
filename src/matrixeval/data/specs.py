"""Task specs from the command line: "NAME", "NAME=LOCAL_FILE[:FIELD]", a bare file path[:FIELD], or a task file
(``my_task.yaml``); NAME may be a task of a task file under ``include_path``."""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import MatrixEvalError
from .readers import FORMATS
from .registry import TASK_NAME, TaskRecipe, get_task, task_names
from .taskfile import include_tasks, is_task_file, read_task_file

__all__ = ["TaskSpec", "parse_task_specs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    """A task to load: a registered recipe (`path` None), a recipe applied to a local file, or a plain file
    (a bare path, named after its stem, or NAME=FILE under a name that is no recipe).

    A spec whose name is a registered recipe always uses that recipe, also with a `path`. `text_field`
    (from ``NAME=FILE:FIELD``, a field path such as ``choices.0.turns.0.content``) overrides both the
    recipe's text and ``--text_field`` for this task.
    """

    name: str
    path: str | None = None
    text_field: str | None = None
    recipe: TaskRecipe | None = None  # a user's task file (include_path, or the file named in --tasks)


def _looks_like_path(token: str) -> bool:
    suffix = Path(token.removesuffix(".gz")).suffix.lower()
    return os.sep in token or "/" in token or suffix in FORMATS or os.path.exists(token)


def _split_field(path: str) -> tuple[str, str | None]:
    """"FILE:FIELD" -> (FILE, FIELD) when FILE names a data file and FIELD is no path; else (path, None)."""
    head, sep, tail = path.rpartition(":")
    if not sep or os.path.exists(path) or not head or "/" in tail or os.sep in tail:
        return path, None
    if not tail.strip():
        raise MatrixEvalError(f"empty field after ':' in {path!r}; write FILE:FIELD, e.g. a.jsonl:choices.0.text")
    return head, tail.strip()


def _stem(path: str) -> str:
    name = Path(path).name
    return name.split(".")[0] if name.lower().endswith(".gz") else Path(path).stem


def _parse_one(token: str, user: Mapping[str, TaskRecipe]) -> TaskSpec:
    if "=" in token:
        name, _, path = (part.strip() for part in token.partition("="))
        if not name or not path:
            raise MatrixEvalError(f"task spec {token!r} is incomplete; write NAME=LOCAL_FILE, e.g. piqa=piqa.jsonl")
        path, field = _split_field(path)
        if name in user:
            return TaskSpec(name, path, field, user[name])
        if name not in task_names():
            _check_plain_name(name, path)
        return TaskSpec(name, path, field)
    if token in user:
        return TaskSpec(token, recipe=user[token])
    if token not in task_names() and Path(token).suffix.lower() in (".yaml", ".yml") or (
            token.lower().endswith(".json") and is_task_file(token)):
        recipe = read_task_file(token)
        if recipe.name in task_names():
            raise MatrixEvalError(f"task file {token}: task: {recipe.name!r} is the name of a built-in task; "
                                  "give yours another name")
        return TaskSpec(recipe.name, recipe=recipe)
    if token not in task_names() and _looks_like_path(_split_field(token)[0]):
        path, field = _split_field(token)
        return TaskSpec(_stem(path), path, field)
    if user and token not in task_names():
        names = sorted([*task_names(), *user])
        close = difflib.get_close_matches(token, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MatrixEvalError(f"unknown task {token!r}; {hint}Valid tasks: {', '.join(names)} (or give a data file "
                              "path, or NAME=LOCAL_FILE)")
    return TaskSpec(get_task(token).name)  # an unknown name raises here, with a suggestion


def _check_plain_name(name: str, path: str) -> None:
    """NAME=FILE with a name that is no recipe: a plain file under the user's name, said aloud if close to one."""
    if not TASK_NAME.match(name):
        raise MatrixEvalError(
            f"invalid task name {name!r} in {name}={path}; "
            "use letters, digits, '_' and '-', starting with a letter or '_'"
        )
    close = difflib.get_close_matches(name, task_names(), n=1)
    if close:
        logger.warning("task %r is not a recipe (did you mean %r?); reading %s as a plain file named %r",
                       name, close[0], path, name)


def parse_task_specs(spec: str | Sequence[str], include_path: str | os.PathLike | Sequence | None = None
                     ) -> list[TaskSpec]:
    """Parse "a,b=FILE,path/to/x.jsonl,my_task.yaml" (or a list of such strings) into TaskSpecs, in order.

    A bare path becomes a plain-file task named after the file stem; a .yaml/.yml (or task .json) path is a task
    file; a name may be a task of the task files under `include_path` (folders or files, a list or a comma
    list); names must be unique.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    tokens = [t.strip() for item in items for t in item.split(",") if t.strip()]
    if not tokens:
        raise MatrixEvalError("no task given; name one or more tasks, e.g. 'pydoc_topics,hh_rlhf' or 'piqa=FILE'")
    user = include_tasks(include_path, reserved=task_names())
    specs = [_parse_one(t, user) for t in tokens]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise MatrixEvalError(
                f"task {s.name!r} is given twice in {', '.join(tokens)!r}; give each task once "
                "(two files that share a stem can be named apart: a=dir1/dev.jsonl,b=dir2/dev.jsonl)"
            )
        seen.add(s.name)
    return specs
