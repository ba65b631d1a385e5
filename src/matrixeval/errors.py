"""The one exception users see: what was wrong and how to fix it, in one line."""


class MatrixEvalError(Exception):
    """A problem with the user's input (arguments, files, configs, models) that they can fix."""
