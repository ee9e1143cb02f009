"""User-facing errors.

Both subclass ``ValueError`` so callers (CLI, app pages) catch one family and show the message,
which always says what was given, what is required and how to fix it.
"""


class ScreenError(ValueError):
    """The input file or AnnData is not a usable CRISPR screen."""


class RunError(ValueError):
    """A run directory is missing, half-written, incompatible or would be overwritten."""


class TrainingCancelled(RuntimeError):
    """Training stopped because the caller asked it to (``should_stop`` returned True)."""


class TrainingError(RuntimeError):
    """Training failed (e.g. the loss became NaN); the message says what to change."""
