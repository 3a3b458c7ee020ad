"""Calibrate the IVORY model to the published evidence (aggregate data), giving the default
posterior ``fits/ivory-published``.

IVORY's individual data are not public; what is public are summaries: the TBR difference
at the end of treatment with its CI, baseline TBR by arm, the two-year MI split of
IVORY-FINALE, the LILACS dose for +75% Tregs, the DILT1D dose for +10%, the DILfrequency
steady-state Treg and CD25 increases. Each is compared with the same summary of a fixed
virtual population (:class:`~il2pkpd.likelihood.VirtualPopulation`) through the
aggregate likelihoods of :mod:`il2pkpd.likelihood` (every number is read from
:func:`il2pkpd.datasets.published` by its row id, so it carries its BRIEF source).

PK anchors (Konrad, Piscitelli, Kirchner, the label) and the receptor Kd are NOT used as
data: the model file's priors were built from them (BRIEF section 8), and using them
again would count them twice.

With ``event_evidence=True`` the TBR-to-event link is informed by data: the Figueroa 2013
tertile hazard ratio and the BIOVASC pooled hazard ratio per SUVmax unit enter as likelihood
terms on ``beta_tbr`` (with the inferred TBR gap and SUV-to-TBR conversion's uncertainty added
to their variance). It is off by default because the model file's prior on ``beta_tbr`` (BRIEF
8.4) was built from those same studies: using them as data needs a prior that was not, or they
count twice.

Posterior (not NUTS: one gradient of this likelihood costs seconds): the posterior mode in the
unconstrained space (L-BFGS with JAX gradients), a Laplace approximation there (Hessian by
central differences of the exact gradient), then adaptive multiple importance sampling from it
(:func:`_adaptive_importance`: Gaussian proposals refitted to the weighted draws, deterministic
mixture weights) until the Pareto k-hat of the weights is below 0.7, and importance resampling.
The draws are then corrected to the exact posterior; where k-hat stays at or above 0.7 the
draws are the Laplace normal, labelled so (``info["approximation"] == "laplace"``), and
``scripts/calibrate_published.py`` refuses to store them as the default posterior.

``sampler="smc"`` replaces the importance rounds by tempered SMC from the same Laplace
proposal (:func:`~.smc.tempered_smc`): where a few directions of the posterior are curved or
skewed, the importance weights degenerate (k-hat >= 0.7 on IVORY in every configuration
tried), while tempering carries the particles there in steps with Metropolis moves. Its check
(``info["smc"]["moves_mixed"]``): every stage's moves decorrelated the particles from where the
stage began; the script refuses to store a run that fails it. It costs far more evaluations
than importance sampling: random-walk moves mix in O(dimension) steps, and on a 34-dimensional
test target shaped like this calibration they reached their 100-step limit in every stage
(README); it checkpoints after every step so that a run longer than a working session resumes.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import Il2pkpdWarning, ModelSpecError, OptionError
from ..likelihood import VirtualPopulation, loglik_count, loglik_dose_for_target, loglik_summary, se_from_ci
from ..solve import SolverOptions
from ..solver_options import DEFAULT_SOLVER_OPTIONS
from .priors import from_unconstrained, prior_draws, prior_logpdf, to_unconstrained

__all__ = ["CalibrationTarget", "PublishedCalibration", "calibrate_published", "published_checks", "finale_split", "posterior_predictions", "IVORY_REGIMEN"]

IVORY_REGIMEN = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"
_EPS = 0.05  # relative dose step for dose-response slopes (central difference)
#: hazard-ratio evidence on beta_tbr (``event_evidence``): reported HR row -> the row of the TBR
#: difference it is per (uncertain, [I])
_HR_EVIDENCE = {"figueroa_tertile_hr": "figueroa_tertile_dtbr", "biovasc_suvmax_hr": "suv_to_tbr"}
#: posterior samplers of :func:`calibrate_published` (``sampler=``)
POSTERIOR_SAMPLERS = {
    "importance": "adaptive multiple importance sampling from the Laplace normal, Pareto-smoothed resampling",
    "smc": "tempered SMC from the Laplace normal (il2pkpd.inference.smc)",
}
#: ``info["method"]`` by what the draws are (``info["approximation"]``)
_METHOD_TEXT = {
    "importance": "mode + Laplace (unconstrained) + adaptive multiple importance sampling ({proposal} proposals, deterministic "
                  "mixture weights) + Pareto-smoothed importance resampling",
    "laplace": "mode + Laplace (unconstrained): draws of the first proposal ({proposal}); importance correction failed its k-hat check",
    "smc": "mode + Laplace (unconstrained) + tempered SMC from the Laplace {proposal} (random-walk Metropolis moves with the "
           "particles' covariance)",
}
#: the settings of calibrate_published that only one sampler takes
_SAMPLER_SETTINGS = {"importance": ("proposals", "rounds", "min_ess", "confirm", "prior_block"),
                     "smc": ("particles", "smc_state", "on_stage")}
_SMC_CORRELATION = 0.1  # tempered_smc's stopping rule for its moves, and the check on it
_DAY_EOT = 61.0  # IVORY end-of-treatment PET (BRIEF 1.2: ~day 61 after the first dose)
_YEAR2 = 730.5


@dataclass(frozen=True)
class CalibrationTarget:
    """One published result used as data: its row id(s), what the model computes, and how."""

    id: str
    description: str
    likelihood: str
    reported: str
    assumption: str = ""


def _row(table, row_id: str):
    rows = table[table["id"] == row_id]
    if len(rows) != 1:
        raise ModelSpecError(f"published-evidence row {row_id!r} not found")
    return rows.iloc[0]


class PublishedCalibration:
    """The aggregate-data posterior of a model over the published IL-2 evidence.

    Parameters
    ----------
    model
        A model with outputs ``tbr``, ``treg_fold``, ``cd25_fold`` and an event ``mi``
        (``surv_mi``), dosed in MIU (the IVORY model).
    n_virtual
        Virtual subjects per arm (fixed scrambled-Sobol random effects).
    seed
        Seed of those normals.
    options
        Solver settings (default ``DEFAULT_SOLVER_OPTIONS["calibration"]``: Rodas4, rtol 1e-6;
        the two-year follow-up is stiff).
    """

    def __init__(self, model, *, n_virtual: int = 32, seed: int = 0, options: SolverOptions | None = None, event_evidence: bool = False):
        from .. import datasets
        from ..dosing import Records, parse_regimen

        needed = {"tbr", "treg_fold", "cd25_fold", "surv_mi"}
        missing = needed - set(model.symbolic.output_names)
        if missing:
            raise ModelSpecError(f"model {model.name!r} lacks outputs {sorted(missing)} needed by the published calibration")
        if model.time_unit not in ("day", "d"):
            raise ModelSpecError(f"the published calibration expects a model on a day clock, got time unit {model.time_unit!r}")
        self.model = model
        self.event_evidence = bool(event_evidence)
        self.options = options or DEFAULT_SOLVER_OPTIONS["calibration"]
        pub = datasets.published()
        self.rows = {k: _row(pub, k) for k in (
            "ivory_tbr0_placebo", "ivory_tbr0_sd_placebo", "ivory_tbr0_il2", "ivory_tbr0_sd_il2", "ivory_tbr_diff_index",
            "finale_mi_2y_il2_count", "finale_mi_2y_placebo_count", "lilacs_ed75", "dilt1d_ed10", "dilt1d_ed10_se",
            "dilfreq_treg_ss", "dilfreq_cd25_ss", *_HR_EVIDENCE, *_HR_EVIDENCE.values())}
        if "beta_tbr" not in model.parameter_names:
            raise ModelSpecError(f"model {model.name!r} lacks the parameter `beta_tbr` (log hazard ratio per TBR unit) needed by the published calibration")
        self._j_beta = model.parameter_names.index("beta_tbr")
        r = self.rows
        bsa = next((c.value for c in model.covariates if c.name == "bsa"), 2.0)

        def doses(text):
            return list(parse_regimen(text).to_records(model)) if text else []

        lil, dil = float(r["lilacs_ed75"].value), float(r["dilt1d_ed10"].value)
        arms = {
            "ivory_il2": (doses(IVORY_REGIMEN), [0.0, _DAY_EOT, _YEAR2]),
            "placebo": (doses(None), [0.0, _DAY_EOT, _YEAR2]),
            "dilfreq": (doses("0.26 MIU/m2 sc q3d x20"), np.linspace(57.0, 60.0, 13)),
        }
        for tag, f in (("lo", 1 - _EPS), ("mid", 1.0), ("hi", 1 + _EPS)):
            arms[f"lilacs_{tag}"] = (doses(f"{lil * f:.10g} MIU sc qd x5"), [5.0])
            arms[f"dilt1d_{tag}"] = (doses(f"{dil * f:.10g} MIU/m2 sc once"), np.linspace(0.0, 7.0, 57))
        self.population = VirtualPopulation(model, {k: (Records(v[0]), v[1]) for k, v in arms.items()}, n=n_virtual, seed=seed,
                                            options=self.options)
        self._bsa = bsa
        self.estimated = [p for p in model.parameters if p.prior is not None and not p.fixed]
        self._index = [model.parameter_names.index(p.name) for p in self.estimated]
        self._theta0 = jnp.array([p.value for p in model.parameters])
        self.targets = self._targets()
        self._logp = jax.jit(self._log_posterior)
        self._grad = jax.jit(jax.value_and_grad(self._log_posterior))

    # ------------------------------------------------------------------ the likelihood
    def _targets(self) -> list[CalibrationTarget]:
        return [
            CalibrationTarget("ivory_tbr0_placebo", "IVORY baseline index-vessel TBRmax, placebo arm", "normal mean, SE = SD/sqrt(n)",
                              "mean of TBR at t = 0 (placebo arm)"),
            CalibrationTarget("ivory_tbr0_il2", "IVORY baseline index-vessel TBRmax, IL-2 arm", "normal mean, SE = SD/sqrt(n)",
                              "mean of TBR at t = 0 (IL-2 arm)"),
            CalibrationTarget("ivory_tbr_diff_index", "IVORY TBRmax difference at end of treatment", "normal, SE from the 95% CI",
                              f"mean TBR(IL-2) - mean TBR(placebo) at day {_DAY_EOT:g}"),
            CalibrationTarget("finale_mi_2y_il2_count", "IVORY-FINALE: MI by 2 years, IL-2", "binomial",
                              "mean of 1 - S_MI(2 y), IL-2 arm", "counts inferred from 0% of 28 [I]"),
            CalibrationTarget("finale_mi_2y_placebo_count", "IVORY-FINALE: MI by 2 years, placebo", "binomial",
                              "mean of 1 - S_MI(2 y), placebo arm", "counts inferred from 11% of 27 [I]"),
            CalibrationTarget("lilacs_ed75", "LILACS: dose for +75% Tregs the day after 5 daily doses", "dose-for-target (delta method), SE from the 95% CI",
                              "100 (mean Treg fold at day 6 - 1) at the reported dose; slope by +-5% doses"),
            CalibrationTarget("dilt1d_ed10", "DILT1D: dose for +10% maximum Treg increase within 7 days", "dose-for-target (delta method), reported SE",
                              "100 (mean of max Treg fold over days 0-7 - 1) at the reported dose"),
            CalibrationTarget("dilfreq_treg_ss", "DILfrequency: Treg increase at steady state (0.26 MIU/m2 q3d)", "normal, SE 7.5 points",
                              "100 (mean Treg fold over the last dosing interval - 1)", "no CI reported: SE = 25% of the value [I]"),
            CalibrationTarget("dilfreq_cd25_ss", "DILfrequency: CD25 on Tregs at steady state", "normal, SE 6.25 points",
                              "100 (mean CD25 fold over the last dosing interval - 1)", "no CI reported: SE = 25% of the value [I]"),
        ] + ([] if not self.event_evidence else [
            CalibrationTarget("figueroa_tertile_hr", "Figueroa 2013: CV events, highest vs lowest aortic TBR tertile",
                              "normal on log HR, SE from the 95% CI plus the tertile gap's uncertainty",
                              "exp(beta_tbr x TBR gap between the tertiles): the model's hazard ratio for a lasting TBR difference",
                              "tertile TBR gap 0.4 (0.2-0.6) [I], not reported; events in oncology patients, not MI after ACS"),
            CalibrationTarget("biovasc_suvmax_hr", "BIOVASC pooled (Kelly 2019): recurrent stroke per +1 g/mL carotid SUVmax",
                              "normal on log HR, SE from the 95% CI plus the SUV-to-TBR conversion's uncertainty",
                              "exp(beta_tbr x TBR units per SUV unit)",
                              "1 SUV = 0.6 (0.5-0.7) TBR units [I]; stroke in carotid disease, not MI after ACS"),
        ])

    def predictions(self, theta_pop) -> dict:
        """The model's value of every target's summary at population parameters ``theta_pop`` (P,)."""
        names = self.model.symbolic.output_names
        outs = self.population.outputs(theta_pop)
        o = {k: v[0] for k, v in outs.items()}
        j_tbr, j_treg, j_cd25, j_surv = (names.index(n) for n in ("tbr", "treg_fold", "cd25_fold", "surv_mi"))
        treg_day6 = {t: 100.0 * (jnp.mean(o[f"lilacs_{t}"][:, 0, j_treg]) - 1.0) for t in ("lo", "mid", "hi")}
        treg_max7 = {t: 100.0 * (jnp.mean(jnp.max(o[f"dilt1d_{t}"][:, :, j_treg], axis=1)) - 1.0) for t in ("lo", "mid", "hi")}
        lil, dil = float(self.rows["lilacs_ed75"].value), float(self.rows["dilt1d_ed10"].value)
        return {
            "ivory_tbr0_placebo": jnp.mean(o["placebo"][:, 0, j_tbr]),
            "ivory_tbr0_il2": jnp.mean(o["ivory_il2"][:, 0, j_tbr]),
            "ivory_tbr_diff_index": jnp.mean(o["ivory_il2"][:, 1, j_tbr]) - jnp.mean(o["placebo"][:, 1, j_tbr]),
            "finale_mi_2y_il2_count": jnp.mean(1.0 - o["ivory_il2"][:, 2, j_surv]),
            "finale_mi_2y_placebo_count": jnp.mean(1.0 - o["placebo"][:, 2, j_surv]),
            "lilacs_ed75": treg_day6["mid"],
            "lilacs_ed75_slope": (treg_day6["hi"] - treg_day6["lo"]) / (2 * _EPS * lil),
            "dilt1d_ed10": treg_max7["mid"],
            "dilt1d_ed10_slope": (treg_max7["hi"] - treg_max7["lo"]) / (2 * _EPS * dil),
            "dilfreq_treg_ss": 100.0 * (jnp.mean(o["dilfreq"][:, :, j_treg]) - 1.0),
            "dilfreq_cd25_ss": 100.0 * (jnp.mean(o["dilfreq"][:, :, j_cd25]) - 1.0),
            **{hr: jnp.exp(theta_pop[self._j_beta] * float(self.rows[per].value)) for hr, per in _HR_EVIDENCE.items()},
            "all_solves_ok": jnp.all(jnp.stack([jnp.all(v[1] == 0) for v in outs.values()])),
        }

    def log_likelihood_terms(self, theta_pop, predictions: dict | None = None) -> dict:
        """Log-likelihood of each published target at ``theta_pop`` (or of given predictions)."""
        r = self.rows
        p = predictions if predictions is not None else self.predictions(theta_pop)
        sd_pl, sd_il = float(r["ivory_tbr0_sd_placebo"].value), float(r["ivory_tbr0_sd_il2"].value)
        diff = r["ivory_tbr_diff_index"]
        lil = r["lilacs_ed75"]
        return {
            "ivory_tbr0_placebo": loglik_summary(p["ivory_tbr0_placebo"], float(r["ivory_tbr0_placebo"].value), sd_pl / math.sqrt(float(r["ivory_tbr0_placebo"].n))),
            "ivory_tbr0_il2": loglik_summary(p["ivory_tbr0_il2"], float(r["ivory_tbr0_il2"].value), sd_il / math.sqrt(float(r["ivory_tbr0_il2"].n))),
            "ivory_tbr_diff_index": loglik_summary(p["ivory_tbr_diff_index"], float(diff.value), se_from_ci(float(diff.lower), float(diff.upper))),
            "finale_mi_2y_il2_count": loglik_count(p["finale_mi_2y_il2_count"], int(r["finale_mi_2y_il2_count"].value), int(r["finale_mi_2y_il2_count"].n)),
            "finale_mi_2y_placebo_count": loglik_count(p["finale_mi_2y_placebo_count"], int(r["finale_mi_2y_placebo_count"].value),
                                                       int(r["finale_mi_2y_placebo_count"].n)),
            "lilacs_ed75": loglik_dose_for_target(p["lilacs_ed75"], p["lilacs_ed75_slope"], 75.0, se_from_ci(float(lil.lower), float(lil.upper))),
            "dilt1d_ed10": loglik_dose_for_target(p["dilt1d_ed10"], p["dilt1d_ed10_slope"], 10.0, float(r["dilt1d_ed10_se"].value)),
            "dilfreq_treg_ss": loglik_summary(p["dilfreq_treg_ss"], float(r["dilfreq_treg_ss"].value), 0.25 * float(r["dilfreq_treg_ss"].value)),
            "dilfreq_cd25_ss": loglik_summary(p["dilfreq_cd25_ss"], float(r["dilfreq_cd25_ss"].value), 0.25 * float(r["dilfreq_cd25_ss"].value)),
        } | ({hr: loglik_summary(jnp.log(p[hr]), math.log(float(r[hr].value)), self.hazard_ratio_sd(hr, jnp.log(p[hr])))
              for hr in _HR_EVIDENCE} if self.event_evidence else {})

    def hazard_ratio_sd(self, hr_row: str, log_hr_model):
        """SD of a reported log hazard ratio per an uncertain TBR difference (``_HR_EVIDENCE``):
        ``sqrt(SE^2 + (log HR_model x CV)^2)``, SE from the HR's 95% CI and CV that of the
        difference (the delta-method variance of beta x difference)."""
        r, s = self.rows[hr_row], self.rows[_HR_EVIDENCE[hr_row]]
        se_ci = se_from_ci(math.log(float(r.lower)), math.log(float(r.upper)))
        cv = se_from_ci(float(s.lower), float(s.upper)) / float(s.value)
        return jnp.sqrt(se_ci**2 + (log_hr_model * cv) ** 2)

    # ------------------------------------------------------------------ the posterior
    def theta(self, u):
        """Unconstrained estimated parameters (K,) -> (full parameter vector (P,), log-Jacobian)."""
        theta, log_jac = self._theta0, 0.0
        for k, (j, p) in enumerate(zip(self._index, self.estimated, strict=True)):
            x, lj = from_unconstrained(p.prior, u[k])
            theta, log_jac = theta.at[j].set(x), log_jac + lj
        return theta, log_jac

    def u_start(self) -> np.ndarray:
        """The model file's typical values, unconstrained."""
        return np.array([float(to_unconstrained(p.prior, p.value)) for p in self.estimated])

    def _log_prior_u(self, u):
        theta, log_jac = self.theta(u)
        return sum(prior_logpdf(p.prior, theta[j]) for j, p in zip(self._index, self.estimated, strict=True)) + log_jac

    def _log_posterior(self, u):
        theta, _ = self.theta(u)
        pred = self.predictions(theta)
        ll = sum(self.log_likelihood_terms(theta, pred).values())
        ok = pred["all_solves_ok"]
        value = self._log_prior_u(u) + ll
        return jnp.where(ok & jnp.isfinite(value), value, -jnp.inf)

    def log_posterior(self, u) -> float:
        """Unnormalised log posterior density in the unconstrained space."""
        return float(self._logp(jnp.asarray(u, dtype=float)))


def calibrate_published(model, *, n_virtual: int = 32, draws: int = 1000, seed: int = 0, maxiter: int = 200,
                        options: SolverOptions | None = None, progress=None, proposals: int = 600, rounds: int = 5, min_ess: float = 400.0,
                        event_evidence: bool = False, proposal_df: float | None = None, inflate: float = 1.0, confirm: int = 1,
                        prior_block: bool = False, sampler: str = "importance", particles: int = 400, smc_state: dict | None = None,
                        on_stage=None):
    """Posterior of ``model`` given the published evidence (see the module docstring).

    ``proposals`` per adaptive importance round (at least 100), at most ``rounds`` rounds, which
    go on while the Pareto k-hat is at or above 0.7 or the importance ESS below ``min_ess``
    (:func:`_adaptive_importance`); ``draws`` equally weighted draws are resampled at the end.
    ``event_evidence``: the hazard-ratio evidence on ``beta_tbr`` as data (see the module
    docstring: only with a prior on ``beta_tbr`` not built from it). ``proposal_df``: Student-t
    proposals of that many degrees of freedom (> 2) instead of normal ones; ``inflate``: a
    factor on the proposals' standard deviations (>= 1); ``confirm``: passing rounds in a row
    needed to stop; ``prior_block``: the parameters the Laplace approximation finds
    uninformed (:func:`_uninformed`) are drawn from their priors in every round and the others
    are proposed given them, by the Laplace normal's regression of the informed on the
    uninformed (:func:`_adaptive_importance`).

    Returns
    -------
    Fit
        ``idata`` with ``posterior`` (chain 1 x ``draws`` resampled draws, or SMC particles),
        ``prior`` and ``sample_stats`` (importance log-weights; 0 for SMC particles), a summary with prior and posterior
        mean/sd and 90% intervals and an ``informed`` flag (posterior SD below 80% of the
        prior SD), and ``info`` (mode, Pareto k-hat and importance ESS or ``info["smc"]``,
        wall time, targets).
    """
    import pandas as pd
    import xarray as xr
    from scipy.optimize import minimize

    from .. import __version__
    from .fit import Fit, model_hash

    if int(draws) != draws or draws < 10:
        raise OptionError(f"`draws` must be an integer >= 10, got {draws!r}")
    if int(proposals) != proposals or proposals < 100:  # PSIS fits its Pareto tail to the largest ~3 sqrt(n) weights
        raise OptionError(f"`proposals` must be an integer >= 100, got {proposals!r}")
    if int(rounds) != rounds or rounds < 1:
        raise OptionError(f"`rounds` must be an integer >= 1, got {rounds!r}")
    if proposal_df is not None and not (math.isfinite(proposal_df) and proposal_df > 2):
        raise OptionError(f"`proposal_df` must be > 2 (a finite covariance), got {proposal_df!r}")
    if not (math.isfinite(inflate) and inflate >= 1):
        raise OptionError(f"`inflate` must be >= 1, got {inflate!r}")
    if int(confirm) != confirm or not 1 <= confirm <= rounds:
        raise OptionError(f"`confirm` must be an integer from 1 to `rounds` ({rounds}), got {confirm!r}")
    if sampler not in POSTERIOR_SAMPLERS:
        raise OptionError(f"`sampler` must be one of {list(POSTERIOR_SAMPLERS)}, got {sampler!r}")
    # a setting of the other sampler changed from its default would be ignored: refused
    given = {"proposals": proposals, "rounds": rounds, "min_ess": min_ess, "confirm": confirm, "prior_block": prior_block,
             "particles": particles, "smc_state": smc_state, "on_stage": on_stage}
    defaults = {name: p.default for name, p in inspect.signature(calibrate_published).parameters.items()}
    for other in set(POSTERIOR_SAMPLERS) - {sampler}:
        changed = [name for name in _SAMPLER_SETTINGS[other] if given[name] != defaults[name]]
        if changed:
            raise OptionError(f"{changed} are settings of sampler={other!r}, not of sampler={sampler!r}")
    if sampler == "smc":
        if isinstance(particles, bool) or int(particles) != particles or particles < 20:
            raise OptionError(f"`particles` must be an integer >= 20, got {particles!r}")
        if draws > particles:
            raise OptionError(f"`draws` ({draws}) must be <= `particles` ({particles}) with sampler='smc': the draws are particles")
    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    cal = PublishedCalibration(model, n_virtual=n_virtual, seed=seed, options=options, event_evidence=event_evidence)
    names = [p.name for p in cal.estimated]
    k = len(names)

    def neg(u):
        v, g = cal._grad(jnp.asarray(u))
        v, g = float(v), np.asarray(g, dtype=float)
        if not np.isfinite(v) or not np.all(np.isfinite(g)):
            return 1e10, np.zeros_like(g)
        return -v, -g

    u0 = cal.u_start()
    v0, g0 = cal._grad(jnp.asarray(u0))
    if not (np.isfinite(float(v0)) and np.all(np.isfinite(np.asarray(g0)))):
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(np.asarray(g0)))]
        raise OptionError(f"published calibration: the log posterior or its gradient is not finite at the model file's values "
                          f"(value {float(v0)!r}; non-finite gradient for {bad[:8]}{' ...' if len(bad) > 8 else ''}): no mode can be searched from there")
    say(f"mode: L-BFGS over {k} parameters")
    opt = minimize(neg, u0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    u_map = opt.x
    say(f"mode found ({opt.nit} iterations, log posterior {-opt.fun:.2f})")
    at_mode = cal.predictions(cal.theta(jnp.asarray(u_map))[0])
    say("predictions at the mode: " + ", ".join(f"{kk} {float(vv):.4g}" for kk, vv in at_mode.items()))
    say("Hessian by central differences of the gradient")
    h = 1e-3
    hess = np.zeros((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        hess[i] = (neg(u_map + e)[1] - neg(u_map - e)[1]) / (2 * h)
    hess = 0.5 * (hess + hess.T)
    w, v = np.linalg.eigh(hess)
    n_flat = int(np.sum(w < 1e-2))
    w = np.maximum(w, 1e-2)  # a non-positive direction gets a wide (sd <= 10) proposal
    cov = (v / w) @ v.T
    rng = np.random.default_rng(seed)
    logp_batch = jax.jit(lambda us: jax.lax.map(cal._log_posterior, us))
    chunk = 50

    def evaluate(us: np.ndarray, label: str) -> np.ndarray:
        # in chunks, so that a long run reports progress (one call over all proposals said nothing for 50+ minutes)
        out = np.empty(len(us))
        for i in range(0, len(us), chunk):
            part = us[i:i + chunk]
            pad = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)]) if len(part) < chunk else part
            out[i:i + len(part)] = np.asarray(logp_batch(jnp.asarray(pad)))[: len(part)]
            say(f"{label}: {i + len(part)}/{len(us)} proposals evaluated")
        return out

    proposal_text = _proposal_text(proposal_df, inflate)
    block, from_prior, rounds_info, smc_record = None, [], [], None
    if sampler == "smc":
        from .smc import tempered_smc

        run = tempered_smc(evaluate, _proposal(u_map, cov, proposal_df, inflate), particles=int(particles), rng=rng, say=say,
                           correlation=_SMC_CORRELATION, state=smc_state, on_stage=on_stage)
        idx = np.sort(rng.choice(int(particles), size=int(draws), replace=False))
        u_draws, log_p, log_w = run["u"], run["log_target"], np.zeros(int(particles))
        # equally weighted particles: no k-hat, no importance ESS
        n_prop, n_failed, khat, ess, method = int(particles), run["failed"], float("nan"), float("nan"), "smc"
        checked = [r for r in run["stages"] if r["correlation_with_start"] >= _SMC_CORRELATION]
        smc_record = {"particles": int(particles), "stages": run["stages"], "log_evidence": run["log_evidence"], "evaluations": run["evaluations"],
                      "reference": f"Laplace {proposal_text}", "moves_mixed": not checked,
                      "check": (f"every stage's Metropolis moves brought the particles' correlation with where the stage began, "
                                f"averaged over the {k} coordinates, below {_SMC_CORRELATION} (PyMC's rule; the largest coordinate's "
                                "is in the stage table)")}
        if checked:
            warnings.warn(f"published calibration: tempered SMC stages {[r['stage'] for r in checked]} stopped their moves at the step limit "
                          f"with the particles still correlated with where the stage began (>= {_SMC_CORRELATION}): the particles may "
                          "under-represent the posterior's spread", Il2pkpdWarning, stacklevel=2)
    else:
        if prior_block:
            dims = _uninformed(cal.estimated, u_map, cov, np.random.default_rng([seed, 11]))
            if dims.size:
                free = np.setdiff1d(np.arange(k), dims)
                # the informed parameters given the prior-drawn ones, by the Laplace normal's regression
                slope = cov[np.ix_(free, dims)] @ np.linalg.pinv(cov[np.ix_(dims, dims)])
                block, from_prior = _prior_block([cal.estimated[i] for i in dims], dims, slope), [names[i] for i in dims]
                say(f"drawn from their priors in every round (uninformed at the Laplace approximation): {from_prior}")
        u_draws, log_p, log_w, rounds_info = _adaptive_importance(evaluate, u_map, cov, n_round=int(proposals), max_rounds=int(rounds), rng=rng,
                                                                 say=say, min_ess=float(min_ess), df=proposal_df, inflate=float(inflate),
                                                                 confirm=int(confirm), prior_block=block)
        n_prop = len(u_draws)
        finite = np.isfinite(log_w)
        n_failed = int(n_prop - finite.sum())
        idx, khat, ess, method = _importance_resample(log_w, finite, rng, n_out=int(draws))
        if method == "laplace":
            # what the rounds drew from: the fallback's draws are the first round's, and are labelled so
            warnings.warn(
                f"published calibration: importance sampling could not correct the Laplace approximation in {len(rounds_info)} "
                f"adaptive rounds (Pareto k-hat {khat:.2f}, needs < 0.7; importance ESS {ess:.1f}); the draws are the first "
                f"round's proposal ({proposal_text}, around the mode; {n_failed} of {n_prop} proposals that failed to solve dropped): "
                "an approximation, not the posterior", Il2pkpdWarning, stacklevel=2)
            first = np.flatnonzero(finite[: rounds_info[0]["proposals"]])
            idx = first[:int(draws)]
    # for power-scaling sensitivity (Kallioinen et al. 2024): each kept draw's log prior density on
    # the model file's scale (no Jacobian: the prior is what is power-scaled) and log-likelihood
    log_prior_u = jax.jit(jax.vmap(cal._log_prior_u))
    log_jac = jax.jit(jax.vmap(lambda u: cal.theta(u)[1]))
    kept_u = jnp.asarray(u_draws[idx])
    lp_u = np.asarray(log_prior_u(kept_u))
    lprior = lp_u - np.asarray(log_jac(kept_u))
    loglik = log_p[idx] - lp_u
    thetas = np.array([np.asarray(cal.theta(jnp.asarray(u))[0]) for u in u_draws[idx]])
    prior_x = prior_draws(cal.estimated, max(len(idx), 1000), rng)
    post = {name: (("chain", "draw"), thetas[None, :, cal._index[i]]) for i, name in enumerate(names)}
    n_keep = len(idx)
    draw = {"chain": [0], "draw": np.arange(n_keep)}
    posterior = xr.Dataset(post, coords=draw)
    prior = xr.Dataset({name: (("chain", "draw"), prior_x[None, :, i]) for i, name in enumerate(names)},
                       coords={"chain": [0], "draw": np.arange(len(prior_x))})
    stats = xr.Dataset({"log_weight": (("chain", "draw"), log_w[None, idx]), "proposal_index": (("chain", "draw"), idx[None, :])}, coords=draw)
    idata = xr.DataTree.from_dict({"posterior": posterior, "prior": prior, "sample_stats": stats,
                                   "log_prior": xr.Dataset({"lprior": (("chain", "draw"), lprior[None, :])}, coords=draw),
                                   "log_likelihood": xr.Dataset({"published": (("chain", "draw"), loglik[None, :])}, coords=draw)})
    rows = []
    for i, p in enumerate(cal.estimated):
        x, pr = thetas[:, cal._index[i]], prior_x[:, i]
        ps, qs = float(np.std(x)), float(np.std(pr))
        rows.append({"parameter": p.name, "prior_mean": float(np.mean(pr)), "prior_sd": qs, "mean": float(np.mean(x)), "sd": ps,
                     "q5": float(np.quantile(x, 0.05)), "q95": float(np.quantile(x, 0.95)), "mode": float(cal.theta(jnp.asarray(u_map))[0][cal._index[i]]),
                     "sd_ratio": ps / qs if qs > 0 else float("nan"), "informed": bool(ps < 0.8 * qs), "source": p.source})
    summary = pd.DataFrame(rows).set_index("parameter")
    theta_map = cal.theta(jnp.asarray(u_map))[0]
    pred_map = {kk: float(vv) for kk, vv in cal.predictions(theta_map).items()}
    info = {
        "il2pkpd_version": __version__, "model": model.name, "model_hash": model_hash(model), "data": "il2pkpd.datasets.published()",
        "method": _METHOD_TEXT[method].format(proposal=proposal_text),
        "approximation": method, "proposals_failed_to_solve": n_failed, "hessian_flat_directions": n_flat,
        "n_virtual": n_virtual, "seed": seed, "event_evidence": bool(event_evidence), "proposal_df": proposal_df, "inflate": float(inflate),
        "confirm_rounds": int(confirm), "drawn_from_prior": from_prior,
        "confirmed": (smc_record["moves_mixed"] if smc_record is not None
                      else bool(len(rounds_info) >= confirm and all(r["passed"] for r in rounds_info[-int(confirm):]))),
        "smc": smc_record, "draws": n_keep, "proposals": n_prop, "importance_rounds": rounds_info,
        "optimizer": {"iterations": int(opt.nit), "success": bool(opt.success), "message": str(opt.message)},
        "log_posterior_mode": float(-opt.fun), "pareto_khat": None if not np.isfinite(khat) else float(khat),
        "importance_ess": None if not np.isfinite(ess) else float(ess),
        "targets": [t.__dict__ for t in cal.targets], "predictions_at_mode": pred_map,
        "solver": {"solver": cal.options.solver, "rtol": cal.options.rtol, "atol": cal.options.atol},
        "wall_time_s": time.perf_counter() - t_start,
    }
    estimates = {name: float(summary.loc[name, "mean"]) for name in names}
    return Fit(model.name, summary, info, estimates, idata)


def _uninformed(params, u_mode: np.ndarray, cov: np.ndarray, rng, n: int = 4000) -> np.ndarray:
    """Indices of the parameters the Laplace approximation leaves at their prior: its SD at
    least 75% of the prior's and its mode within half a prior SD of the prior's median, both
    in the unconstrained space (the prior's from ``n`` draws). 75%, not more: the Laplace SD
    of a prior that is not normal there understates it (a logit-uniform prior: 78%)."""
    x = prior_draws(params, n, rng)
    u = np.stack([np.asarray(to_unconstrained(p.prior, x[:, i])) for i, p in enumerate(params)], axis=1)
    sd_prior, centre = u.std(axis=0), np.median(u, axis=0)
    sd_post = np.sqrt(np.diag(cov))
    return np.flatnonzero((sd_post >= 0.75 * sd_prior) & (np.abs(u_mode - centre) <= 0.5 * sd_prior))


def _proposal_text(df: float | None, inflate: float) -> str:
    """What :func:`_proposal` draws from, in words (the fit's method and warnings)."""
    return ("Gaussian" if df is None else f"Student-t (df {df:g})") + (f", standard deviations x{inflate:g}" if inflate != 1 else "")


def _prior_block(params, dims: np.ndarray, slope: np.ndarray | None = None):
    """``(dims, draw, logpdf, slope)`` for :func:`_adaptive_importance`: draws of ``params``
    from their priors, unconstrained, their joint log density there (the Jacobian included),
    and the regression of the other coordinates on these (``None``: none)."""

    def draw(n, rng):
        x = prior_draws(params, n, rng)
        return np.stack([np.asarray(to_unconstrained(p.prior, x[:, i])) for i, p in enumerate(params)], axis=1)

    def one(u):
        total = 0.0
        for i, p in enumerate(params):
            x, log_jac = from_unconstrained(p.prior, u[i])
            total = total + prior_logpdf(p.prior, x) + log_jac
        return total

    batch = jax.jit(jax.vmap(one))
    return dims, draw, lambda u: np.asarray(batch(jnp.asarray(u))), slope


def _psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalised log-weights and k-hat of finite log importance ratios."""
    from arviz_stats.base.array import array_stats

    if np.ptp(log_w) < 1e-12:  # equal weights (proposal = target): nothing to smooth, k-hat undefined -> 0
        return np.full(len(log_w), -math.log(len(log_w))), 0.0
    # arviz_stats takes -log(ratio) (its LOO input is the log-likelihood) and negates it back
    smoothed, khat = array_stats.psislw(-(log_w - np.max(log_w)))
    smoothed = smoothed - np.logaddexp.reduce(smoothed)
    return smoothed, float(khat)


def _proposal(mean: np.ndarray, cov: np.ndarray, df: float | None, inflate: float):
    """A frozen proposal with covariance ``inflate^2 cov``: normal, or multivariate Student t
    with ``df`` > 2 degrees of freedom (shape scaled by (df - 2) / df, heavier tails)."""
    from scipy.stats import multivariate_normal, multivariate_t

    c = inflate**2 * cov
    if df is None:
        return multivariate_normal(mean=mean, cov=c, allow_singular=True)
    return multivariate_t(loc=mean, shape=c * (df - 2) / df, df=df, allow_singular=True)


def _adaptive_importance(evaluate, mean: np.ndarray, cov: np.ndarray, *, n_round: int, max_rounds: int, rng, say, min_ess: float = 0.0,
                         df: float | None = None, inflate: float = 1.0, confirm: int = 1, prior_block=None):
    """Adaptive multiple importance sampling (AMIS; Cornuet et al. 2012, Scand J Stat 39:798).

    Round 1 draws ``n_round`` proposals from N(mean, cov) (the Laplace normal). Every draw so
    far is weighted against the equal-count mixture of every proposal so far (deterministic
    mixture weights), and PSIS (Vehtari et al. 2024, JMLR 25:72) smooths the weights and gives
    k-hat. While k-hat >= 0.7 (or the importance ESS is below ``min_ess``, while rounds remain)
    the next round's proposal is the normal with the weighted mean and
    covariance of the pool, the covariance shrunk towards the previous proposal's by the
    importance ESS against the dimension (few effective draws cannot estimate a 35 x 35
    covariance). ``evaluate(u, label)`` gives the log target density (``-inf`` where a solve
    fails: those draws get no weight). With ``df`` the proposals are multivariate Student t
    of that many degrees of freedom and the same covariance (heavier tails: a region the
    normal proposals never reached is what made their k-hat jump in a later round on IVORY);
    ``inflate`` scales every proposal's standard deviations. ``confirm``: rounds in a row that
    must pass before stopping (with 2, a pool that passes is probed by one more round drawn
    from its own refit: on IVORY a passing round was once overturned by the next).

    ``prior_block = (dims, draw, logpdf, slope)`` (:func:`_prior_block`): the coordinates
    ``dims`` are drawn from their priors in every round (``draw(n, rng)`` -> (n, len(dims));
    ``logpdf(u)`` their joint log density) and only the others are proposed and adapted.
    Where the data do not inform a parameter its posterior is its prior, which is then
    proposed exactly, tails included (a logit-uniform prior has the logistic's exponential
    tails, which a normal proposal misses); importance sampling's mismatch, and the ESS it
    costs, is confined to the informed coordinates. With ``slope`` (a matrix (others, dims);
    ``None``: zero) the others are proposed given the drawn ones, ``u_others = slope @ u_dims
    + z`` with ``z`` from the adapted proposal (a change of variables of unit Jacobian), for
    a posterior in which informed parameters move with prior-drawn ones. The weights stay
    exact for any choice of ``dims`` and ``slope``.

    Returns (all draws, their log target density, their log importance weight, a record per round).
    """
    from scipy.special import logsumexp

    full = len(mean)
    fixed = np.asarray(prior_block[0] if prior_block is not None else [], dtype=int)
    free = np.setdiff1d(np.arange(full), fixed)
    slope = np.zeros((len(free), len(fixed)))
    if prior_block is not None and prior_block[3] is not None:
        slope = np.asarray(prior_block[3], dtype=float)
    # the proposal is on z = u_free - slope u_fixed: its mean and covariance under N(mean, cov)
    c = np.asarray(cov)
    c_ff, c_fx, c_xx = c[np.ix_(free, free)], c[np.ix_(free, fixed)], c[np.ix_(fixed, fixed)]
    mean = np.asarray(mean)[free] - slope @ np.asarray(mean)[fixed]
    cov = c_ff - slope @ c_fx.T - c_fx @ slope.T + slope @ c_xx @ slope.T
    k = len(free)

    def z_of(u):
        return u[:, free] - u[:, fixed] @ slope.T
    proposals, draws, log_p, rounds = [], [], [], []
    passed = 0  # consecutive rounds that passed
    for r in range(max_rounds):
        q = _proposal(mean, cov, df, inflate)
        u = np.empty((n_round, full))
        z = np.asarray(q.rvs(size=n_round, random_state=rng)).reshape(n_round, k)
        if fixed.size:
            u[:, fixed] = prior_block[1](n_round, rng)
        u[:, free] = z + u[:, fixed] @ slope.T
        proposals.append(q)
        draws.append(u)
        log_p.append(evaluate(u, f"importance round {r + 1}"))
        u_all, lp_all = np.concatenate(draws), np.concatenate(log_p)
        log_q = logsumexp(np.stack([qq.logpdf(z_of(u_all)).reshape(len(u_all)) for qq in proposals]), axis=0) - math.log(len(proposals))
        if fixed.size:
            log_q = log_q + prior_block[2](u_all[:, fixed])
        log_w = lp_all - log_q
        finite = np.isfinite(log_w)
        if finite.sum() < 10:
            raise OptionError(f"published calibration: only {int(finite.sum())} of {len(log_w)} proposals could be solved; "
                              "the Laplace approximation is unusable (check the mode)")
        lw, khat = _psis(log_w[finite])
        ess = float(1.0 / np.sum(np.exp(2 * lw)))
        rounds.append({"round": r + 1, "proposals": int(n_round), "pareto_khat": khat, "importance_ess": ess,
                       "failed_to_solve": int(np.sum(~np.isfinite(log_p[-1]))), "passed": bool(khat < 0.7 and ess >= min_ess)})
        say(f"importance round {r + 1}: Pareto k-hat {khat:.3f}, importance ESS {ess:.1f} of {len(log_w)}")
        passed = passed + 1 if rounds[-1]["passed"] else 0
        if passed >= confirm:
            break
        w = np.exp(lw)
        x = z_of(u_all[finite])
        mean = w @ x
        centred = x - mean
        weighted = (centred * w[:, None]).T @ centred
        lam = ess / (ess + k)
        cov = lam * weighted + (1 - lam) * cov
    return u_all, lp_all, log_w, rounds


def _importance_resample(log_w: np.ndarray, finite: np.ndarray, rng, n_out: int | None = None) -> tuple[np.ndarray, float, float, str]:
    """Pareto-smoothed importance resampling, or the proposal itself when k-hat says no.

    Returns (indices of ``n_out`` kept draws (default: as many as ``log_w``), k-hat, importance
    ESS, "importance" | "laplace"). Draws whose log density is not finite (failed solves) are
    never kept: they lie outside the region where the model can be evaluated.
    """
    n = len(log_w)
    n_out = n if n_out is None else int(n_out)
    kept = np.flatnonzero(finite)
    if len(kept) < 10:
        raise OptionError(f"published calibration: only {len(kept)} of {n} proposals could be solved; "
                          "the Laplace approximation is unusable (check the mode)")
    lw = np.full_like(log_w, -np.inf)
    lw[kept], khat = _psis(log_w[kept])
    weights = np.exp(lw)
    weights /= weights.sum()
    ess = float(1.0 / np.sum(weights**2))
    if np.isfinite(khat) and khat < 0.7:
        positions = (rng.random() + np.arange(n_out)) / n_out  # systematic resampling: equally weighted draws
        return np.minimum(np.searchsorted(np.cumsum(weights), positions), n - 1), khat, ess, "importance"
    return kept, khat, ess, "laplace"


def posterior_predictions(fit, model, *, draws: int = 100, n_virtual: int | None = None) -> tuple[PublishedCalibration, list[dict]]:
    """Every target's model value (:meth:`PublishedCalibration.predictions`) at ``draws``
    evenly thinned posterior draws of ``fit``, with the calibration that computed them: what
    :func:`published_checks` and :func:`finale_split` read (pass it as ``predictions`` to
    both to solve once)."""
    n_virtual = n_virtual or int(fit.info.get("n_virtual", 32))
    cal = PublishedCalibration(model, n_virtual=n_virtual, seed=int(fit.info.get("seed", 0)))
    post = fit.population_draws()
    total = len(next(iter(post.values())))
    pick = np.unique(np.linspace(0, total - 1, min(draws, total)).round().astype(int))
    base = np.array([p.value for p in model.parameters])
    predict = jax.jit(cal.predictions)
    preds = []
    for d in pick:
        theta = base.copy()
        for j, p in enumerate(model.parameters):
            if p.name in post:
                theta[j] = post[p.name][d]
        preds.append({k: float(v) for k, v in predict(jnp.asarray(theta)).items()})
    return cal, preds


def finale_split(fit, model, *, draws: int = 100, n_virtual: int | None = None, predictions=None) -> dict:
    """The posterior's IVORY-FINALE prediction: expected MI counts by two years per arm (for
    the trial's arm sizes), their posterior predictive count intervals, and the two-year
    hazard ratio IL-2 vs placebo, each as median and 90% interval over ``draws`` posterior
    draws.

    The hazard ratio is the ratio of the arms' two-year cumulative hazards of the virtual
    population, ``log S_il2 / log S_placebo`` with ``S`` each arm's mean survival (exact for
    proportional hazards; for this model a time-averaged summary). ``predictions``: from
    :func:`posterior_predictions` (else computed here).
    """
    cal, preds = predictions or posterior_predictions(fit, model, draws=draws, n_virtual=n_virtual)
    out = {"draws": len(preds)}
    for arm in ("il2", "placebo"):
        key = f"finale_mi_2y_{arm}_count"
        n = int(cal.rows[key].n)
        p = np.clip([q[key] for q in preds], 0.0, 1.0)
        out[arm] = {"n": n, "observed": int(cal.rows[key].value), "expected_count": _median_90(n * p),
                    "predictive_count_90": _predictive_count_90(p, n)}
    hr = np.array([math.log1p(-q["finale_mi_2y_il2_count"]) / math.log1p(-q["finale_mi_2y_placebo_count"]) for q in preds])
    out["hazard_ratio"] = {**_median_90(hr), "p_below_1": float(np.mean(hr < 1.0))}
    return out


def _predictive_count_90(probs, n: int) -> list[int]:
    """5% and 95% quantiles of the posterior predictive count out of ``n``: the exact mixture of
    binomials over the draws' event probabilities (no Monte Carlo noise, which with few draws
    could move a quantile across 0)."""
    from scipy.stats import binom

    probs = np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    cdf = np.mean([binom.cdf(np.arange(n + 1), n, q) for q in probs], axis=0)
    return [int(np.searchsorted(cdf, 0.05)), int(np.searchsorted(cdf, 0.95))]


def _median_90(x) -> dict:
    x = np.asarray(x, dtype=float)
    return {"median": float(np.median(x)), "q05": float(np.quantile(x, 0.05)), "q95": float(np.quantile(x, 0.95))}


def published_checks(fit, model, *, draws: int = 100, n_virtual: int | None = None, seed: int = 0, predictions=None):
    """Posterior predictive checks of a fit against the published targets (a DataFrame).

    For ``draws`` posterior draws (evenly thinned) the virtual population is solved and each
    target's summary computed; the replicated published number adds the reporting noise
    the likelihood assumes (normal with the reported SE, binomial counts, the delta-method
    response SE for dose-for-target results). Columns: target, reported, model median and
    5/95%, replicated 5/95%, ``inside`` (reported value within the replicated 90% interval).
    ``predictions``: from :func:`posterior_predictions` (else computed here).
    """
    import pandas as pd

    cal, preds = predictions or posterior_predictions(fit, model, draws=draws, n_virtual=n_virtual)
    r = cal.rows
    rng = np.random.default_rng(seed)
    lil, dil, diff = r["lilacs_ed75"], r["dilt1d_ed10"], r["ivory_tbr_diff_index"]
    spec = {  # target -> (reported, model value fn, replicate fn, unit)
        "ivory_tbr0_placebo": (float(r["ivory_tbr0_placebo"].value), lambda p: p["ivory_tbr0_placebo"],
                               lambda p: p["ivory_tbr0_placebo"] + rng.normal() * float(r["ivory_tbr0_sd_placebo"].value) / math.sqrt(float(r["ivory_tbr0_placebo"].n)), "TBR"),
        "ivory_tbr_diff_index": (float(diff.value), lambda p: p["ivory_tbr_diff_index"],
                                 lambda p: p["ivory_tbr_diff_index"] + rng.normal() * se_from_ci(float(diff.lower), float(diff.upper)), "TBR"),
        "finale_mi_2y_il2_count": (float(r["finale_mi_2y_il2_count"].value), lambda p: p["finale_mi_2y_il2_count"] * float(r["finale_mi_2y_il2_count"].n),
                                   lambda p: rng.binomial(int(r["finale_mi_2y_il2_count"].n), min(max(p["finale_mi_2y_il2_count"], 0.0), 1.0)), "events"),
        "finale_mi_2y_placebo_count": (float(r["finale_mi_2y_placebo_count"].value),
                                       lambda p: p["finale_mi_2y_placebo_count"] * float(r["finale_mi_2y_placebo_count"].n),
                                       lambda p: rng.binomial(int(r["finale_mi_2y_placebo_count"].n), min(max(p["finale_mi_2y_placebo_count"], 0.0), 1.0)), "events"),
        "lilacs_ed75": (75.0, lambda p: p["lilacs_ed75"],
                        lambda p: p["lilacs_ed75"] + rng.normal() * abs(p["lilacs_ed75_slope"]) * se_from_ci(float(lil.lower), float(lil.upper)),
                        f"% Treg increase at {float(lil.value):g} MIU"),
        "dilt1d_ed10": (10.0, lambda p: p["dilt1d_ed10"],
                        lambda p: p["dilt1d_ed10"] + rng.normal() * abs(p["dilt1d_ed10_slope"]) * float(r["dilt1d_ed10_se"].value),
                        f"% max Treg increase at {float(dil.value):g} MIU/m2"),
        "dilfreq_treg_ss": (float(r["dilfreq_treg_ss"].value), lambda p: p["dilfreq_treg_ss"],
                            lambda p: p["dilfreq_treg_ss"] + rng.normal() * 0.25 * float(r["dilfreq_treg_ss"].value), "% Treg increase"),
        "dilfreq_cd25_ss": (float(r["dilfreq_cd25_ss"].value), lambda p: p["dilfreq_cd25_ss"],
                            lambda p: p["dilfreq_cd25_ss"] + rng.normal() * 0.25 * float(r["dilfreq_cd25_ss"].value), "% CD25 increase"),
    }
    for hr in _HR_EVIDENCE if fit.info.get("event_evidence") else ():
        spec[hr] = (float(r[hr].value), lambda p, k=hr: p[k],
                    lambda p, k=hr: math.exp(math.log(p[k]) + rng.normal() * float(cal.hazard_ratio_sd(k, math.log(p[k])))), "hazard ratio")
    rows = []
    for target, (reported, value, replicate, unit) in spec.items():
        model_vals = np.array([value(p) for p in preds])
        if unit == "events":
            q5, q95 = (float(c) for c in _predictive_count_90([p[target] for p in preds], int(r[target].n)))
        else:
            reps = np.array([replicate(p) for p in preds])
            q5, q95 = np.quantile(reps, [0.05, 0.95])
        rows.append({"target": target, "unit": unit, "reported": reported, "model_median": float(np.median(model_vals)),
                     "model_q05": float(np.quantile(model_vals, 0.05)), "model_q95": float(np.quantile(model_vals, 0.95)),
                     "replicated_q05": float(q5), "replicated_q95": float(q95), "inside": bool(q5 <= reported <= q95),
                     "source": str(r[target].source) if target in r else ""})
    return pd.DataFrame(rows)
