"""The analyses a simulated trial is put through, vectorised over many trials (NumPy/SciPy).

Each analysis compares one treated arm with the control arm and returns, per trial, the
effect estimate, its standard error and the two-sided p-value:

==========================  ===================================================================
``ancova(tbr, 60)``          ANCOVA of the observation at day 60 on its baseline (day 0) and the
                             arm (OLS, ``y60 ~ 1 + y0 + arm``): the arm's coefficient, t test
                             with ``n - 3`` degrees of freedom (the PET endpoint of IVORY, S12)
``ttest(treg, 4)``           two-sample t test (pooled variance) of the observation at day 4:
                             the difference of means, ``n - 2`` degrees of freedom
``change(treg, 4)``          the same on the change from baseline (day 0)
``mmrm(treg, 60)``            MMRM-lite: every post-baseline visit up to day 60 of the observation
                             the design samples, ``y_v ~ visit + visit:y0 + visit:arm`` with an unstructured
                             covariance over visits, by feasible GLS (below); the arm's effect
                             at day 60, Wald t test with ``n - 3`` degrees of freedom
``logrank(mi)``              log-rank test of an event (chi-square, 1 df) with the Cox hazard
                             ratio (Breslow partial likelihood, Newton) as the estimate; the
                             estimate and its SE are on the log scale
==========================  ===================================================================

Times are days from the first dose, as in :class:`~il2pkpd.design.TrialDesign`. A visit a
subject did not reach (dropout) is NaN: ANCOVA and the t tests use the subjects observed at the
endpoint (complete cases), MMRM-lite uses every visit observed.

**MMRM-lite** is a mixed model for repeated measures without its iterations: (1) OLS per visit
on the subjects observed there; (2) the covariance between visits from those residuals, each
entry over the subjects observed at both visits (divisor: their number minus 3), made positive
definite if sampling noise left it not; (3) one GLS step with that covariance, each subject
weighted by the inverse of its observed block. With complete data (1)-(3) reproduce the
ANCOVA at the endpoint exactly (same regressors at every visit: GLS equals OLS); with dropout
completely at random earlier visits carry information on later ones through the covariance.
Left out, and said so: REML iterations, Kenward-Roger degrees of freedom (``n - 3`` is used),
and missingness that depends on the outcome (MAR beyond MCAR is untested).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import OptionError

__all__ = ["Analysis", "ANALYSES", "parse_analysis", "ancova", "ttest", "mmrm", "logrank"]

_CALL = re.compile(r"^\s*([a-z]+)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:,\s*([-+0-9.eE]+)\s*)?\)\s*$")


@dataclass(frozen=True)
class Analysis:
    """One analysis: ``kind`` (a key of :data:`ANALYSES`) of observation or event ``name``
    at ``day`` (observations)."""

    kind: str
    name: str
    day: float | None
    text: str

    @property
    def is_event(self) -> bool:
        return self.kind == "logrank"

    @property
    def days(self) -> tuple[float, ...]:
        """The sample days the analysis reads."""
        if self.day is None:
            return ()
        return (0.0, self.day) if self.kind in ("ancova", "change", "mmrm") else (self.day,)


def parse_analysis(text: str, model) -> Analysis:
    """``"ancova(tbr, 60)"`` / ``"ttest(treg, 4)"`` / ``"change(treg, 4)"`` / ``"logrank(mi)"``,
    checked against ``model``'s observations and events."""
    m = _CALL.match(str(text))
    if not m or m.group(1) not in ANALYSES:
        raise OptionError(f"analysis {text!r} must be one of ancova(OBS, DAY), ttest(OBS, DAY), change(OBS, DAY), mmrm(OBS, DAY), logrank(EVENT)")
    kind, name, day = m.group(1), m.group(2), m.group(3)
    if kind == "logrank":
        events = [e.name for e in model.events]
        if name not in events or day is not None:
            raise OptionError(f"analysis {text!r}: logrank takes an event of model {model.name!r} ({events}) and no day")
        return Analysis(kind, name, None, f"logrank({name})")
    obs = [o.name for o in model.observations]
    if name not in obs:
        raise OptionError(f"analysis {text!r}: {name!r} is not an observation of model {model.name!r} ({obs})")
    if day is None:
        raise OptionError(f"analysis {text!r}: {kind} needs the day of the endpoint, e.g. {kind}({name}, 60)")
    d = float(day)
    if not (math.isfinite(d) and d > 0):
        raise OptionError(f"analysis {text!r}: the day must be > 0 (day 0 is the baseline), got {day}")
    return Analysis(kind, name, d, f"{kind}({name}, {d:g})")


def _observed(*ys: np.ndarray) -> np.ndarray:
    """Subjects (T, n) observed in every array (a NaN is a visit missed after dropout)."""
    return np.logical_and.reduce([np.isfinite(y) for y in ys])


def ancova(y0: np.ndarray, y1: np.ndarray, arm: np.ndarray):
    """Per trial (rows): OLS of ``y1`` on ``1, y0, arm`` (T, n each; ``arm`` 0/1), over the
    subjects observed at both times (NaN: missed).

    Returns the arm coefficient, its standard error and the two-sided p-value (t, n - 3 df)."""
    w = _observed(y0, y1).astype(float)
    y0, y1 = np.where(w > 0, y0, 0.0), np.where(w > 0, y1, 0.0)
    x = np.stack([w, y0 * w, arm.astype(float) * w], axis=-1)  # (T, n, 3); a missed subject is a zero row
    xtx = np.einsum("tni,tnj->tij", x, x)
    xty = np.einsum("tni,tn->ti", x, y1 * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.linalg.matrix_rank(xtx) == 3
        safe = np.where(ok[:, None, None], xtx, np.eye(3))
        beta = np.linalg.solve(safe, xty[..., None])[..., 0]
        resid = (y1 - np.einsum("tni,ti->tn", x, beta)) * w
        df = w.sum(axis=1) - 3
        s2 = np.sum(resid**2, axis=1) / df
        se = np.sqrt(s2 * np.linalg.inv(safe)[:, 2, 2])
        t = beta[:, 2] / se
        p = 2.0 * stats.t.sf(np.abs(t), df)
    bad = ~ok | (df < 1)
    return np.where(bad, np.nan, beta[:, 2]), np.where(bad, np.nan, se), np.where(bad, np.nan, p)


def ttest(y: np.ndarray, arm: np.ndarray):
    """Per trial: pooled-variance two-sample t test of ``y`` (T, n) between ``arm`` 1 and 0,
    over the subjects observed (NaN: missed).

    Returns the difference of means (1 - 0), its SE and the two-sided p-value (n - 2 df)."""
    seen = _observed(y)
    a, c = arm.astype(bool) & seen, ~arm.astype(bool) & seen
    y = np.where(seen, y, 0.0)
    n1, n0 = a.sum(axis=1), c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.where(a, y, 0.0).sum(axis=1) / n1
        m0 = np.where(c, y, 0.0).sum(axis=1) / n0
        ss = np.where(a, (y - m1[:, None]) ** 2, 0.0).sum(axis=1) + np.where(c, (y - m0[:, None]) ** 2, 0.0).sum(axis=1)
        df = n1 + n0 - 2
        se = np.sqrt(ss / df * (1.0 / n1 + 1.0 / n0))
        d = m1 - m0
        p = 2.0 * stats.t.sf(np.abs(d / se), df)
    bad = (n1 < 1) | (n0 < 1) | (df < 1)
    return np.where(bad, np.nan, d), np.where(bad, np.nan, se), np.where(bad, np.nan, p)


def mmrm(y0: np.ndarray, y: np.ndarray, arm: np.ndarray, visit: int):
    """Per trial: MMRM-lite (module docstring) of the post-baseline visits ``y`` (T, n, V; NaN
    where missed) on ``visit + visit:y0 + visit:arm``, baseline ``y0`` (T, n).

    Returns the arm effect at visit index ``visit``, its model-based SE and the two-sided
    p-value (t, n - 3 df, n the subjects observed at baseline)."""
    t_, n, v = y.shape
    base = np.isfinite(y0)
    seen = np.isfinite(y) & base[..., None]  # (T, n, V)
    w = seen.astype(float)
    z = np.stack([base.astype(float), np.where(base, y0, 0.0), arm.astype(float) * base], axis=-1)  # (T, n, 3)
    yv = np.where(seen, y, 0.0)
    # (1) OLS per visit over the subjects seen there: beta (T, V, 3)
    zz = np.einsum("tnv,tni,tnj->tvij", w, z, z)
    zy = np.einsum("tnv,tni,tnv->tvi", w, z, yv)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.linalg.matrix_rank(zz) == 3  # (T, V)
        beta = np.linalg.solve(np.where(full[..., None, None], zz, np.eye(3)), zy[..., None])[..., 0]
        r = (yv - np.einsum("tni,tvi->tnv", z, beta)) * w
        # (2) covariance between visits over the subjects seen at both (divisor: their number - 3)
        pairs = np.einsum("tnv,tnu->tvu", w, w)
        cov = np.einsum("tnv,tnu->tvu", r, r) / (pairs - 3)
    ok = full.all(axis=1) & (pairs.min(axis=(1, 2)) > 3)
    cov = np.where(ok[:, None, None], cov, np.eye(v))
    evals, evecs = np.linalg.eigh(cov)
    floor = 1e-8 * np.maximum(evals[:, -1:], 1e-300)
    cov = np.einsum("tij,tj,tkj->tik", evecs, np.maximum(evals, floor), evecs)  # positive definite
    # (3) GLS: each subject weighted by the inverse of its observed block (zeros elsewhere)
    wi = np.zeros((t_, n, v, v))
    for pattern in np.unique(seen.reshape(-1, v), axis=0):
        idx = np.flatnonzero(pattern)
        if idx.size == 0:
            continue
        at = np.all(seen == pattern, axis=-1)  # (T, n)
        inv = np.linalg.inv(cov[:, idx[:, None], idx[None, :]])  # (T, k, k)
        block = np.zeros((t_, v, v))
        block[:, idx[:, None], idx[None, :]] = inv
        wi = np.where(at[..., None, None], block[:, None], wi)
    # X_i = I_V (x) z_i^T, so X_i^T W_i X_i = W_i (x) z_i z_i^T and X_i^T W_i y_i = (W_i y_i) (x) z_i
    a = np.einsum("tnvu,tni,tnj->tviuj", wi, z, z).reshape(t_, 3 * v, 3 * v)
    b = np.einsum("tnvu,tnu,tni->tvi", wi, yv, z).reshape(t_, 3 * v)
    a = np.where(ok[:, None, None], a, np.eye(3 * v))
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = np.linalg.solve(a, b[..., None])[..., 0]
        k = 3 * visit + 2  # the arm's coefficient at the endpoint visit
        se = np.sqrt(np.linalg.inv(a)[:, k, k])
        df = base.sum(axis=1) - 3
        p = 2.0 * stats.t.sf(np.abs(coef[:, k] / se), df)
    bad = ~ok | (df < 1)
    return np.where(bad, np.nan, coef[:, k]), np.where(bad, np.nan, se), np.where(bad, np.nan, p)


def logrank(time: np.ndarray, event: np.ndarray, arm: np.ndarray):
    """Per trial: the log-rank test of ``arm`` 1 against 0 and the Cox log hazard ratio.

    ``time`` (T, n), ``event`` (T, n; 1 event, 0 censored), ``arm`` (T, n). Ties by Breslow.
    Returns the log hazard ratio (Cox, Newton from 0; -inf or +inf where a trial has no
    event in the treated or the control arm, NaN with no event at all), its SE (inverse information) and the log-rank p-value
    (chi-square, 1 df; NaN without events)."""
    order = np.argsort(time, axis=1, kind="stable")
    t = np.take_along_axis(time, order, axis=1)
    d = np.take_along_axis(event, order, axis=1).astype(float)
    x = np.take_along_axis(arm, order, axis=1).astype(float)
    n = t.shape[1]
    # risk sets: everyone with time >= t_i; with ties, the first of a tied block starts it
    first = np.concatenate([np.ones((t.shape[0], 1), bool), t[:, 1:] > t[:, :-1]], axis=1)
    start = np.maximum.accumulate(np.where(first, np.arange(n)[None, :], 0), axis=1)
    at_risk = (n - start).astype(float)
    at_risk1 = np.take_along_axis(np.cumsum(x[:, ::-1], axis=1)[:, ::-1], start, axis=1)
    # log-rank: observed minus expected events in arm 1, hypergeometric variance (Breslow: per event row)
    d_tot = np.zeros_like(d)
    np.add.at(d_tot, (np.arange(t.shape[0])[:, None].repeat(n, 1), start), d)  # events per tied time, at its first row
    dt = np.where(first, d_tot, 0.0)
    d1 = np.zeros_like(d)
    np.add.at(d1, (np.arange(t.shape[0])[:, None].repeat(n, 1), start), d * x)
    d1 = np.where(first, d1, 0.0)
    p1 = at_risk1 / at_risk
    o_minus_e = np.sum(d1 - dt * p1, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.sum(np.where(at_risk > 1, dt * p1 * (1 - p1) * (at_risk - dt) / np.maximum(at_risk - 1, 1), 0.0), axis=1)
        chi2 = o_minus_e**2 / var
    p = np.where(var > 0, stats.chi2.sf(chi2, 1), np.nan)
    beta, se = _cox(dt, d1, at_risk, at_risk1, first)
    return beta, se, p


def _cox(dt, d1, at_risk, at_risk1, first, iterations: int = 30):
    """Newton on the Breslow partial likelihood of one binary covariate, per trial: with
    ``r0``/``r1`` at risk at each distinct time, the score is ``sum d1 - dt r1 e^b / (r0 - r1 +
    r1 e^b)`` and the information ``sum dt p (1 - p)``, ``p`` that fraction."""
    beta = np.zeros(dt.shape[0])
    r1, r0 = at_risk1, at_risk - at_risk1
    e1, e0 = np.sum(d1, axis=1), np.sum(dt - d1, axis=1)
    ok = (e1 > 0) & (e0 > 0)  # events in both arms: a finite MLE
    for _ in range(iterations):
        e = np.exp(beta)[:, None]
        pr = np.where(first, r1 * e / np.maximum(r0 + r1 * e, 1e-300), 0.0)
        score = np.sum(d1 - dt * pr, axis=1)
        info = np.sum(dt * pr * (1 - pr), axis=1)
        step = np.where(ok & (info > 0), score / np.where(info > 0, info, 1.0), 0.0)
        beta = beta + np.clip(step, -2.0, 2.0)
        if np.all(np.abs(step) < 1e-10):
            break
    e = np.exp(beta)[:, None]
    pr = np.where(first, r1 * e / np.maximum(r0 + r1 * e, 1e-300), 0.0)
    info = np.sum(dt * pr * (1 - pr), axis=1)
    # no event in one arm: the MLE is at infinity (hazard ratio 0 or inf), none at all: undefined
    limit = np.where(e1 > 0, np.inf, np.where(e0 > 0, -np.inf, np.nan))
    return np.where(ok, beta, limit), np.where(ok & (info > 0), 1.0 / np.sqrt(np.where(info > 0, info, 1.0)), np.nan)


#: analysis kind -> the function of the trial data it runs (one table; :func:`parse_analysis` reads it)
ANALYSES = {"ancova": ancova, "ttest": ttest, "change": ttest, "mmrm": mmrm, "logrank": logrank}
