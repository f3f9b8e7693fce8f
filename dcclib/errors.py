"""The exception types for bad input and failed runs: the CLI prints one line, exits 2 (3: diverged)."""


class UserError(Exception):
    """Bad input from a user (unknown name, missing file, impossible setting).

    The message is a complete one-line sentence that says what is wrong and how to fix it.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython shows when this is raised in a notebook cell: the one line, no traceback."""
        return [f"{type(self).__name__}: {self}"]


class DivergedError(UserError):
    """The optimisation produced NaN or infinity: the message names the outer iteration, the
    settings to lower, and what was kept (the last finite checkpoint; no set is written)."""


class UnsavedResultError(UserError):
    """An output could not be written after the work was done; `result` holds what was
    computed (JSON-able), for the caller to show so that nothing is lost."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result
