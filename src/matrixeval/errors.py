"""The one exception users see: what was wrong and how to fix it, in one line."""


class MatrixEvalError(Exception):
    """A problem with the user's input (arguments, files, configs, models) that they can fix."""


class WriteError(MatrixEvalError):
    """A file that could not be written (full disk, permissions): never a reason to carry on without it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, carrying the one line to show: how much is stored and how to resume."""
