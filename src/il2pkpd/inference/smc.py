"""Tempered sequential Monte Carlo from a reference distribution to a posterior.

The particles start as exact draws from a reference ``q`` (for the published calibration:
the Laplace normal at the mode) and are carried to the target ``p`` (an unnormalised log
posterior) along the geometric path

    log pi_beta(u) = (1 - beta) log q(u) + beta log p(u),   beta from 0 to 1,

each step (Del Moral, Doucet & Jasra 2006, JRSS B 68:411; the adaptive form of Jasra et al.
2011, Scand J Stat 38:1, and of PyMC's ``pm.sample_smc``):

1. the next ``beta`` is the largest one whose incremental weights keep the effective sample
   size at ``target_ess`` x particles (bisection), and the weights' mean adds to the log
   normalising constant;
2. the particles are resampled (systematic) to equal weights;
3. each is moved by random-walk Metropolis steps that leave ``pi_beta`` invariant, the proposal
   covariance the particles' own, scaled so that the acceptance rate stays near 0.234
   (Roberts, Gelman & Gilks 1997), until the particles have forgotten where the stage began
   (their positions' correlation with it, averaged over coordinates, below ``correlation``:
   PyMC's rule; the largest coordinate's correlation is recorded beside it).

Where importance sampling from ``q`` fails (a few proposals carry the weight: Pareto k-hat >=
0.7), the tempering splits the mismatch into steps each of which resampling and moves can
repair. The result is an equally weighted set of draws from ``p`` (as good as the moves mix:
each stage records its acceptance rate, steps and the share of particles that moved) and an
estimate of ``log Z = log integral p(u) du`` (``Z`` itself would be unbiased for a fixed
temperature schedule; the log is biased low by about half its variance, and the adaptive
schedule adds a bias that vanishes as particles grow).

Pure NumPy around a user-supplied batched ``evaluate``; after every resampling and every
Metropolis step the state (a dict of arrays, numbers and lists, handed over as a deep copy)
goes to ``on_stage``, and a run restarts from it (``state=``, arrays or lists), so that a
long run that is stopped resumes where it was, on the same random stream.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Protocol

import numpy as np
from scipy.special import logsumexp

from ..errors import OptionError

__all__ = ["Reference", "tempered_smc"]



class Reference(Protocol):
    """A distribution the particles start from: exact draws and a normalised log density."""

    def rvs(self, size: int, random_state) -> np.ndarray: ...

    def logpdf(self, u: np.ndarray) -> np.ndarray: ...


#: state entries that are arrays (lists after a JSON round trip); "moving" holds more of them
_ARRAYS = ("u", "log_target", "log_ref", "moving")


def _arrays(value):
    """A state entry read back (from JSON): arrays as arrays, the in-stage record's arrays too."""
    if isinstance(value, dict):
        return {k: (np.asarray(v, dtype=bool) if k == "moved" else np.asarray(v, dtype=float) if k in ("start", "chol") else v)
                for k, v in value.items()}
    return value if value is None else np.asarray(value, dtype=float)


def _ess(log_w: np.ndarray) -> float:
    """Effective sample size of (unnormalised) log weights (-inf: weight zero)."""
    if not np.any(np.isfinite(log_w)):
        return 0.0
    w = np.exp(log_w - np.max(log_w))
    return float(w.sum() ** 2 / np.sum(w**2))


def _next_beta(beta: float, increment: np.ndarray, target: float) -> float:
    """The largest beta' in (beta, 1] with ESS of ``(beta' - beta) * increment`` >= ``target``.

    ``increment`` is ``log p - log q`` per particle (-inf where ``p`` could not be evaluated).
    The ESS falls monotonically as beta' grows (for finite increments), so bisection finds it.
    """
    if _ess((1.0 - beta) * increment) >= target:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _ess((mid - beta) * increment) >= target:
            lo = mid
        else:
            hi = mid
    # a step too small to resolve would stall the run: it is at least 1e-6 of the remaining path
    return max(lo, beta + 1e-6 * (1.0 - beta))


def _correlations(start: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Per coordinate, the correlation across particles of where each started the stage's
    moves and where it is now (PyMC's SMC stops its moves when their mean is < 0.01); 1 for a
    coordinate that does not vary (it has not moved)."""
    a, b = start - start.mean(axis=0), now - now.mean(axis=0)
    denominator = np.sqrt(np.sum(a**2, axis=0) * np.sum(b**2, axis=0))
    return np.where(denominator > 0, np.sum(a * b, axis=0) / np.where(denominator > 0, denominator, 1.0), 1.0)


def _systematic(log_w: np.ndarray, rng) -> np.ndarray:
    """Indices of a systematic resample of ``len(log_w)`` particles with these log weights."""
    n = len(log_w)
    cumulative = np.cumsum(np.exp(log_w - logsumexp(log_w)))
    positions = (rng.random() + np.arange(n)) / n
    # normalised by its own end, so rounding never selects a zero-weight last particle
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], positions), n - 1)


def tempered_smc(evaluate: Callable[[np.ndarray, str], np.ndarray], reference: Reference, *, particles: int, rng: np.random.Generator,
                 target_ess: float = 0.5, correlation: float = 0.1, max_steps: int = 100, min_steps: int = 2, max_stages: int = 100,
                 say: Callable[[str], None] | None = None, state: dict | None = None,
                 on_stage: Callable[[dict], None] | None = None) -> dict:
    """Carry ``particles`` draws from ``reference`` to the target by tempering (module docstring).

    Parameters
    ----------
    evaluate
        ``evaluate(u, label)``: the target's unnormalised log density at the rows of ``u``
        (shape (n, d)) as an array (n,); ``-inf`` where it cannot be evaluated (those points
        get weight zero and are never moved to; NaN and +inf count as failures too, and are
        counted in ``failed``). ``label`` names the work, for progress.
    reference
        Exact draws (``rvs``) and normalised log density (``logpdf``) of the start.
    particles
        Number of particles (>= 20).
    rng
        The random generator (its state is part of ``state``, so a resumed run continues the
        same stream).
    target_ess
        Share of the particles kept effective at each tempering step, in (0, 1).
    correlation
        The Metropolis steps of a stage go on (between ``min_steps`` and ``max_steps``) until
        the particles' positions are correlated with where they began the stage by less than
        this (mean over coordinates; PyMC's SMC stops at 0.01). On a skewed test target
        (independent log-gamma(1.2) coordinates, from their Laplace normal), 0.1 gave the
        mean, variance and normalising constant within Monte Carlo error, and stopping on
        "each particle has moved once with probability 0.9" underestimated the variance by 7%.
    max_stages
        Tempering stages at most; a run that has not reached beta = 1 by then is refused.
    say
        Progress messages.
    state
        A state from ``on_stage`` to resume from (the same ``evaluate`` and ``reference``;
        another reference is refused).
    on_stage
        Called with the state after every resampling and every Metropolis step (to
        checkpoint it: a stage of an expensive target can outlast a working session).

    Returns
    -------
    dict
        ``u`` (particles, d) equally weighted draws from the target, ``log_target`` at them,
        ``log_evidence`` (log of the target's integral), ``stages`` (a record per stage: beta,
        the ESS share, acceptance rate, Metropolis steps, share of particles moved at least
        once, the positions' correlation with the stage's start (mean and largest over
        coordinates), unique particles, scale), ``evaluations``, ``failed`` (evaluations that
        were not finite) and ``beta`` (1.0).
    """
    if isinstance(particles, bool) or not isinstance(particles, (int, np.integer)) or particles < 20:
        raise OptionError(f"`particles` must be an integer >= 20, got {particles!r}")
    if not 0.0 < target_ess < 1.0:
        raise OptionError(f"`target_ess` must be in (0, 1), got {target_ess!r}")
    if not 0.0 < correlation < 1.0:
        raise OptionError(f"`correlation` must be in (0, 1), got {correlation!r}")
    if not 1 <= min_steps <= max_steps:
        raise OptionError(f"need 1 <= `min_steps` ({min_steps!r}) <= `max_steps` ({max_steps!r})")
    say = say or (lambda msg: None)
    if state is None:
        u = np.asarray(reference.rvs(size=particles, random_state=rng), dtype=float).reshape(particles, -1)
        lp = np.asarray(evaluate(u, "SMC stage 0 (reference draws)"), dtype=float)
        state = {"u": u, "log_target": lp, "log_ref": reference.logpdf(u).reshape(particles), "beta": 0.0, "log_evidence": 0.0,
                 "stages": [], "evaluations": particles, "failed": int(np.sum(~np.isfinite(lp))), "scale": 2.38 / math.sqrt(u.shape[1]),
                 "moving": None}
        if state["failed"] > 0.5 * particles:
            raise OptionError(f"tempered SMC: the target could not be evaluated at {state['failed']} "
                              f"of {particles} reference draws: the reference is too far from where the model solves")
    else:
        rng.bit_generator.state = state["rng"]
        state = {k: _arrays(v) if k in _ARRAYS else v for k, v in state.items() if k != "rng"}
        if state["u"].shape[0] != particles:
            raise OptionError(f"`state` has {state['u'].shape[0]} particles, the run asks for {particles}")
        # the stored reference densities must be this reference's: another one (e.g. a mode found
        # again that moved) would make every later acceptance ratio and log Z silently wrong
        again = np.asarray(reference.logpdf(state["u"]), dtype=float).reshape(particles)
        if not np.allclose(again, state["log_ref"], rtol=1e-6, atol=1e-8):
            raise OptionError(f"`state` was made with another reference distribution (its log densities differ by up to "
                              f"{float(np.max(np.abs(again - state['log_ref']))):.3g}): resume with the reference it was made with")
        say(f"SMC resumed at stage {len(state['stages']) + (state['moving'] is not None)}, beta {state['beta']:.4g}")

    def checkpoint():
        if on_stage is not None:  # a deep copy: the run goes on changing its arrays in place
            on_stage(copy.deepcopy({**state, "rng": rng.bit_generator.state}))

    n, d = state["u"].shape
    scale_range = (1e-3 * 2.38 / math.sqrt(d), 10 * 2.38 / math.sqrt(d))
    while state["moving"] is not None or state["beta"] < 1.0:
        if state["moving"] is None:  # reweight to the next temperature and resample
            stage = len(state["stages"]) + 1
            if stage > max_stages:
                raise OptionError(f"tempered SMC: beta reached only {state['beta']:.4g} in `max_stages`={max_stages} stages; "
                                  "the reference is far from the target (or raise max_stages)")
            lp, lq = state["log_target"], state["log_ref"]
            increment = np.where(np.isfinite(lp), lp - lq, -np.inf)
            new_beta = _next_beta(state["beta"], increment, target_ess * n)
            log_w = (new_beta - state["beta"]) * increment
            state["log_evidence"] += float(logsumexp(log_w) - math.log(n))
            idx = _systematic(log_w, rng)
            u = state["u"][idx]
            unique = len(np.unique(u, axis=0))
            if unique < min(d + 1, n):
                raise OptionError(f"tempered SMC: at stage {stage} the particles collapsed to {unique} distinct points, too few for "
                                  f"a {d}-dimensional proposal covariance (raise `particles` or `target_ess`)")
            # random-walk Metropolis with the particles' covariance (regularised: a collapsed
            # direction would freeze the moves)
            cov = np.cov(u, rowvar=False).reshape(d, d)
            state.update(u=u, log_target=lp[idx], log_ref=lq[idx], beta=new_beta)
            state["moving"] = {"stage": stage, "ess": _ess(log_w), "start": u.copy(), "steps": 0, "accepted": [],
                               "moved": np.zeros(n, dtype=bool), "chol": np.linalg.cholesky(cov + (1e-8 * np.trace(cov) / d + 1e-300) * np.eye(d))}
            checkpoint()
        m, beta = state["moving"], state["beta"]
        u, lp, lq = state["u"], state["log_target"], state["log_ref"]
        log_pi = np.where(np.isfinite(lp), (1 - beta) * lq + beta * lp, -np.inf)
        proposal = u + state["scale"] * rng.standard_normal((n, d)) @ m["chol"].T
        lp_new = np.asarray(evaluate(proposal, f"SMC stage {m['stage']} (beta {beta:.4g}), Metropolis step {m['steps'] + 1}"), dtype=float)
        lq_new = reference.logpdf(proposal).reshape(n)
        state["failed"] += int(np.sum(~np.isfinite(lp_new)))
        log_pi_new = np.where(np.isfinite(lp_new), (1 - beta) * lq_new + beta * lp_new, -np.inf)
        accept = np.log(rng.random(n)) < log_pi_new - log_pi
        m["moved"] |= accept & np.any(proposal != u, axis=1)
        u[accept], lp[accept], lq[accept] = proposal[accept], lp_new[accept], lq_new[accept]
        rate = float(accept.mean())
        m["accepted"].append(rate)
        m["steps"] += 1
        state["evaluations"] += n
        # keep the acceptance near 0.234 (within bounds); the scale carries over to the next stage
        state["scale"] = float(np.clip(state["scale"] * math.exp(rate - 0.234), *scale_range))
        # more steps while the particles still remember where the stage's moves began
        correlations = _correlations(m["start"], u)
        remembered = float(np.mean(correlations))
        if not (m["steps"] < min_steps or (m["steps"] < max_steps and remembered >= correlation)):
            record = {"stage": m["stage"], "beta": beta, "ess_share": m["ess"] / n, "acceptance": float(np.mean(m["accepted"])),
                      "steps": m["steps"], "moved_share": float(m["moved"].mean()), "correlation_with_start": remembered,
                      "max_correlation_with_start": float(np.max(correlations)),
                      "unique_share": float(len(np.unique(u, axis=0)) / n), "scale": state["scale"]}
            state["stages"].append(record)
            state["moving"] = None
            say(f"SMC stage {record['stage']}: beta {beta:.4g}, ESS {m['ess']:.0f}/{n}, acceptance {record['acceptance']:.2f} over "
                f"{record['steps']} steps, moved {record['moved_share']:.0%}, log Z {state['log_evidence']:.2f}")
        checkpoint()
    u, lp = state["u"], state["log_target"]
    return {"u": u, "log_target": lp, "log_evidence": state["log_evidence"], "stages": state["stages"], "evaluations": state["evaluations"],
            "failed": state["failed"], "beta": state["beta"]}
