"""Status codes of a subject's solve."""

from __future__ import annotations

from ._events import GHOSTS

__all__ = ["SolveStatus"]


class SolveStatus:
    """Status codes of a subject's solve (0 is success)."""

    SUCCESS = 0
    MAX_STEPS = 1
    SOLVER_FAILED = 2
    STEADY_STATE_NOT_REACHED = 3
    TOO_MANY_OVERLAPPING_INFUSIONS = 4
    INVALID_DOSE_PARAMETER = 5
    NON_FINITE = 6

    MESSAGES = {
        0: "success",
        1: "maximum number of solver steps reached",
        2: "the ODE solver failed",
        3: "steady state not reached within the iteration limit",
        4: f"more than {GHOSTS} overlapping infusions at steady state (II much shorter than the infusion)",
        5: "invalid dose parameter (bioavailability < 0, lag < 0, or a modelled rate/duration <= 0 for a RATE = -1/-2 dose)",
        6: "the solution became non-finite (NaN or infinity)",
    }
    HINTS = {
        1: "Try solver='rodas4' (stiff), looser rtol/atol, or a larger max_steps.",
        2: "Check parameter values; try solver='rodas4' or looser tolerances.",
        3: "The model may have no periodic steady state for this dose (e.g. an accumulating state); raise ss_max_iter or avoid SS records.",
        4: "Split the regimen into explicit doses instead of SS records.",
        5: "Set the model's F/ALAG/R/D parameters (or dataset columns) to valid values.",
        6: "Check parameter values (e.g. negative volumes) and the model's expressions.",
    }
