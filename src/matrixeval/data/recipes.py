"""The built-in tasks: task files shipped in the package (``data/tasks/*.yaml``), read and registered at import.

A built-in is defined as a user's task file is (see :mod:`matrixeval.data.taskfile`); adding a data set = adding
one file. Texts whose rules need code name a function of ``taskfile.FUNCTIONS`` (``!function dolly_text``).
"""

from __future__ import annotations

from .registry import TaskRecipe, register_task
from .taskfile import BUILTIN_TASKS_DIR, read_task_file

__all__ = ["DEFAULT_TASK", "RECIPES"]

DEFAULT_TASK = "pydoc_topics"

RECIPES: tuple[TaskRecipe, ...] = tuple(read_task_file(p) for p in sorted(BUILTIN_TASKS_DIR.glob("*.yaml")))

for _recipe in RECIPES:
    register_task(_recipe)
