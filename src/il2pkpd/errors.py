"""Exception and warning classes of il2pkpd.

Every error raised for bad user input derives from :class:`Il2pkpdError` and from the
matching builtin (``ValueError`` or ``RuntimeError``), so that callers can catch either.
Messages follow one template: name the argument, state the constraint, show the value
received, and say where (file, key, row, subject, dose) when that is known.
"""

from __future__ import annotations

__all__ = [
    "Il2pkpdError",
    "ModelSpecError",
    "RegimenError",
    "DataFormatError",
    "ShapeError",
    "OptionError",
    "SolverError",
    "Il2pkpdWarning",
    "UnitsWarning",
]


class Il2pkpdError(Exception):
    """Base class of every il2pkpd error."""


class ModelSpecError(Il2pkpdError, ValueError):
    """A model specification (file or Python) is invalid."""


class RegimenError(Il2pkpdError, ValueError):
    """A dosing regimen, dose record or regimen string is invalid."""


class DataFormatError(Il2pkpdError, ValueError):
    """A dataset (NONMEM-style table, parameter table) is invalid.

    ``problems`` lists every problem found (each naming its row, subject and value) when
    a whole table was validated at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class ShapeError(Il2pkpdError, ValueError):
    """An array has the wrong shape.

    Parameters
    ----------
    message
        What was being checked.
    actual, expected
        The shape received and the shape required.
    """

    def __init__(self, message: str, actual: object = None, expected: object = None):
        if actual is not None or expected is not None:
            message = f"{message} (actual shape {actual}, expected {expected})"
        super().__init__(message)
        self.actual = actual
        self.expected = expected


class OptionError(Il2pkpdError, ValueError):
    """A solver or run option (tolerance, solver name, step limit) is invalid."""


class SolverError(Il2pkpdError, RuntimeError):
    """An ODE solve failed (and ``throw=True`` was asked for)."""


class Il2pkpdWarning(UserWarning):
    """Something the user should know about, that does not stop the run."""


class UnitsWarning(Il2pkpdWarning):
    """A unit was assumed or converted in a way the user may not expect."""
