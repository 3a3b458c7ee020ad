"""Log-likelihood profiling of a typical value (PsN's ``llp``; issue 14).

A Wald interval (estimate +- z SE) assumes the objective is quadratic around the estimate. On
a ridge it is not: the 60-subject IVORY recovery's ec50 runs off to thousands on some data sets
(benchmarks/README.md), where the Wald interval is meaningless. The profile is what a
pharmacometrician reads instead: the OFV with the parameter fixed at each of several values and
every other estimate (typical values, variances, residual SDs) refitted, and the
profile-likelihood interval, the values whose OFV is within ``chi2_1(level)`` of the minimum
(3.84 at 95%, 2.71 at 90%). An interval the values given do not close is reported open on that
side, not extrapolated.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..errors import Il2pkpdWarning, OptionError
from ..likelihood import METHODS
from ..solve import SolverOptions

__all__ = ["Profile", "profile_likelihood"]


@dataclass(frozen=True)
class Profile:
    """The OFV profile of one typical value.

    Attributes
    ----------
    parameter
        The parameter profiled.
    values
        (N,) the values it was fixed at, ascending, in the model file's units.
    ofv
        (N,) NONMEM's OFV at each, every other estimate refitted.
    estimate, ofv_min
        The parameter's maximum-likelihood estimate and the OFV there (the free fit).
    level, threshold
        The interval's level and the OFV rise that bounds it (``chi2.ppf(level, 1)``).
    lower, upper
        The profile-likelihood interval's ends, interpolated between the values given linearly
        in the signed root ``sqrt(OFV - OFV_min)`` (exact where the profile is quadratic);
        ``None`` where the OFV stays below the threshold up to the last value on
        that side (the interval is open there, within the values given).
    converged
        (N,) whether each refit converged.
    """

    parameter: str
    values: np.ndarray
    ofv: np.ndarray
    estimate: float
    ofv_min: float
    level: float
    threshold: float
    lower: float | None
    upper: float | None
    converged: np.ndarray

    @property
    def delta_ofv(self) -> np.ndarray:
        """(N,) the OFV above the free fit's minimum."""
        return self.ofv - self.ofv_min


def profile_likelihood(model, data, parameter: str, values, *, method: str = "focei", level: float = 0.9,
                       options: SolverOptions | None = None, ofv_tol: float | None = None) -> Profile:
    """Profile the OFV of one estimated typical value.

    Parameters
    ----------
    model
        The model, as for :func:`~.estimation.estimate`.
    data
        :class:`~il2pkpd.likelihood.SubjectData` or records per subject.
    parameter
        An estimated (not ``fixed``) parameter of ``model``; its random effect, if any, stays
        estimated.
    values
        At least two values, inside the parameter's bounds, in the model file's units.
    method
        A key of :data:`~il2pkpd.likelihood.METHODS`.
    level
        The interval's level, in (0, 1) (default 0.9: an OFV rise of 2.71).
    options, ofv_tol
        As for :func:`~.estimation.estimate`, used by the free fit and every refit.
    """
    from scipy.stats import chi2

    from .estimation import estimate

    if method not in METHODS:
        raise OptionError(f"`method` must be one of {sorted(METHODS)}, got {method!r}")
    by_name = {p.name: p for p in model.parameters}
    if parameter not in by_name:
        raise OptionError(f"`parameter` must be a parameter of model {model.name!r}, got {parameter!r}; parameters: {sorted(by_name)}")
    spec = by_name[parameter]
    if spec.fixed:
        raise OptionError(f"`parameter` {parameter!r} is fixed in model {model.name!r}: only an estimated typical value has a profile")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise OptionError(f"`level` must be a number in (0, 1), got {level!r}")
    try:
        grid = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise OptionError(f"`values` must be numbers, got {values!r}") from None
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or np.unique(grid).size != grid.size:
        raise OptionError(f"`values` must be at least two distinct finite numbers, got {np.asarray(values).tolist()!r}")
    outside = grid[(grid <= spec.lower) | (grid >= spec.upper)]
    if outside.size:
        raise OptionError(f"`values` must lie inside the bounds of {parameter} ({spec.lower:g}, {spec.upper:g}), got {outside[0]:g}")
    grid = np.sort(grid)

    free = estimate(model, data, method=method, options=options, covariance=False, ofv_tol=ofv_tol)
    start = {k: float(v) for k, v in free.estimates.items() if k != parameter}
    ofv, converged = np.empty(grid.size), np.zeros(grid.size, dtype=bool)
    for i, value in enumerate(grid):
        fixed = model.replace(parameters=tuple(replace(p, value=float(value), fixed=True) if p.name == parameter else p
                                               for p in model.parameters))
        est = estimate(fixed, data, method=method, options=options, covariance=False, ofv_tol=ofv_tol, start=start)
        ofv[i], converged[i] = est.ofv, bool(est.info.get("converged"))
    estimate_value, ofv_min = float(free.estimates[parameter]), float(free.ofv)
    if np.min(ofv) < ofv_min - 1e-3:
        at = grid[int(np.argmin(ofv))]
        warnings.warn(f"the profile of {parameter} reaches OFV {np.min(ofv):.3f} at {at:g}, below the free fit's {ofv_min:.3f}: "
                      "the free fit stopped short of the minimum; refit from there", Il2pkpdWarning, stacklevel=2)
    threshold = float(chi2.ppf(level, 1))
    lower = _crossing(grid[grid < estimate_value][::-1], ofv[grid < estimate_value][::-1] - ofv_min, estimate_value, threshold)
    upper = _crossing(grid[grid > estimate_value], ofv[grid > estimate_value] - ofv_min, estimate_value, threshold)
    return Profile(parameter, grid, ofv, estimate_value, ofv_min, float(level), threshold, lower, upper, converged)


def _crossing(values: np.ndarray, delta: np.ndarray, estimate: float, threshold: float) -> float | None:
    """Where ``delta`` (the OFV rise at ``values``, ordered outward from ``estimate``, where it
    is 0) first reaches ``threshold``; ``None`` if it never does. Interpolated linearly in the
    signed root ``sqrt(delta)`` (R's ``profile``/``confint`` statistic), which is linear in the
    parameter wherever the profile is quadratic: exact there, and close on a smooth profile."""
    x_prev, r_prev, r_end = estimate, 0.0, math.sqrt(threshold)
    for x, d in zip(values, delta):
        r = math.sqrt(max(float(d), 0.0))
        if r >= r_end:
            return float(x_prev + (r_end - r_prev) * (x - x_prev) / (r - r_prev)) if r > r_prev else float(x)
        x_prev, r_prev = x, r
    return None
