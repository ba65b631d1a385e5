"""Tasks and their documents: a registry of recipes (data), file readers, and `load_task`."""

from .loader import (DEFAULT_SAMPLE_SEED, SKIP_REASONS, Corpus, Document, Task, load_task, open_corpus, sample_fields,
                     sample_seed_for)
from .recipes import DEFAULT_TASK
from .registry import TaskRecipe, get_task, list_tasks, register_task, task_names
from .specs import TaskSpec, parse_task_specs

__all__ = [
    "DEFAULT_SAMPLE_SEED",
    "DEFAULT_TASK",
    "SKIP_REASONS",
    "Corpus",
    "Document",
    "Task",
    "TaskRecipe",
    "TaskSpec",
    "get_task",
    "list_tasks",
    "load_task",
    "open_corpus",
    "sample_fields",
    "sample_seed_for",
    "parse_task_specs",
    "register_task",
    "task_names",
]
