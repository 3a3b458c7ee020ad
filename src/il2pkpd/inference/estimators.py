"""The estimators behind :func:`il2pkpd.fit`: one small class per method, registered in
:data:`ESTIMATORS` (the one table ``fit``, the CLI and the docs read).

Each estimator declares the settings only it takes (with their defaults) and checks them
before any slow work; :func:`~.fit.fit` refuses a setting the chosen method does not take,
naming the methods that do, so that nothing given is silently ignored.

* ``"nuts"`` (:class:`Nuts`): the posterior by NUTS (nutpie, PyMC, NumPyro or BlackJAX).
* ``"map"`` (:class:`JointMap`): the joint posterior mode over population parameters and
  random effects (a fast path; no uncertainty; not a marginal-likelihood estimate).
* ``"foce"``, ``"focei"``, ``"laplace"`` (:class:`Marginal`): maximum likelihood with the
  random effects integrated out (:func:`~.estimation.estimate`), NONMEM's OFV, covariance
  step, SIR; with ``priors=True`` MAP-FOCE-I (the model file's priors).
"""

from __future__ import annotations

import math

import time
import warnings
from typing import ClassVar

import numpy as np

from ..errors import Il2pkpdWarning, OptionError
from ..likelihood import METHODS, SubjectData
from ..model import model_hash, residual_parameter_name
from ..solve import SolverOptions
from .pymc_model import PARAMETERIZATIONS

__all__ = ["Estimator", "Nuts", "JointMap", "Marginal", "ESTIMATORS", "NUTS_SAMPLERS"]

#: NUTS implementations of ``fit(sampler=...)``
NUTS_SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
_JAX_SAMPLERS = ("numpyro", "blackjax")


class Estimator:
    """One way of fitting a model to data.

    Attributes
    ----------
    description
        One line for tables, help texts and messages.
    settings
        The keyword settings of :func:`~.fit.fit` only this estimator takes, with defaults.
    solver_defaults
        The key of :data:`~il2pkpd.solver_options.DEFAULT_SOLVER_OPTIONS` used when the
        caller gives no ``options``.
    """

    description: ClassVar[str] = ""
    settings: ClassVar[dict[str, object]] = {}
    solver_defaults: ClassVar[str] = "fit"

    def check(self, settings: dict) -> None:
        """Refuse bad settings (one line naming the setting) before any slow work."""

    def run(self, model, subjects: SubjectData, *, options: SolverOptions, seed: int, progressbar: bool, **settings):
        """Fit and return a :class:`~.fit.Fit`."""
        raise NotImplementedError


def _provenance(model, subjects: SubjectData, seed: int) -> dict:
    from .. import __version__
    from .fit import data_hash

    return {"il2pkpd_version": __version__, "model": model.name, "model_hash": model_hash(model), "data_hash": data_hash(subjects),
            "n_subjects": len(subjects), "seed": seed}


def _positive_int(name: str, value, lowest: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
        raise OptionError(f"`{name}` must be an integer >= {lowest}, got {value!r}")


class Nuts(Estimator):
    """The posterior by NUTS; ``sampler`` picks the implementation (:data:`NUTS_SAMPLERS`)."""

    description = "NUTS: draws from the posterior (model-file priors)"
    settings = {"sampler": "nutpie", "draws": 1000, "tune": 1000, "chains": 4, "predictive_draws": 200, "init": None,
                "parameterization": "auto", "mass_matrix": "auto"}
    #: the ways of setting NUTS's inverse mass matrix; those from the init fit need a sampler that takes one
    MASS_MATRIX = {
        "adapt": "adapted in warm-up from the identity (the sampler's default)",
        "init": "started from the init fit's joint normal approximation (the covariance step, each subject's conditional covariance "
                "and the sensitivity of its modes: warm_start.initial_inverse_mass_matrix), then adapted in warm-up",
        "fixed": "the init fit's joint normal approximation throughout (warm_start.initial_inverse_mass_matrix; only the step size "
                 "adapted in warm-up)",
    }
    #: samplers that take a starting inverse mass matrix (nutpie 0.16 and PyMC's BlackJAX path take none)
    MASS_MATRIX_SAMPLERS = ("numpyro",)
    #: how NumPyro/BlackJAX run several chains (:meth:`chain_method` picks one)
    CHAIN_METHODS = {
        "vectorized": "all chains in one program (lockstep: every leapfrog step waits for the longest tree)",
        "sequential": "one chain after another, each with every core (IL2PKPD_CPU_DEVICES splits its subjects over them)",
    }
    #: the chain methods each JAX sampler takes (PyMC's BlackJAX path has no sequential one)
    SAMPLER_CHAIN_METHODS = {"numpyro": ("vectorized", "sequential"), "blackjax": ("vectorized",)}
    #: with ``parameterization="auto"`` and an ``init`` fit, a random effect whose eta-shrinkage
    #: is below this (percent) is centred: its data pin each subject's value down
    CENTRED_BELOW_SHRINKAGE = 30.0

    def check(self, settings: dict) -> None:
        if settings["sampler"] not in NUTS_SAMPLERS:
            raise OptionError(f"`sampler` must be one of {list(NUTS_SAMPLERS)} (or 'map', which is method='map'), got {settings['sampler']!r}")
        for name in ("draws", "chains"):
            _positive_int(name, settings[name])
        for name in ("tune", "predictive_draws"):
            _positive_int(name, settings[name], lowest=0)
        init = settings["init"]
        if init is not None and init.info.get("method") not in METHODS:
            raise OptionError(f"`init` must be a maximum-likelihood fit (fit(method='focei'|'foce'|'laplace')), "
                              f"got one by {init.info.get('method', init.info.get('sampler'))!r}")
        choice = settings["parameterization"]
        if not (choice in ("auto", *PARAMETERIZATIONS) or isinstance(choice, dict)):
            raise OptionError(f"`parameterization` must be 'auto', 'centered', 'noncentered' or a dict of IIV parameter -> one of those, got {choice!r}")
        mass = settings["mass_matrix"]
        if mass not in ("auto", *self.MASS_MATRIX):
            raise OptionError(f"`mass_matrix` must be 'auto' or one of {list(self.MASS_MATRIX)}, got {mass!r}")
        if mass in ("init", "fixed") and init is None:
            raise OptionError(f"`mass_matrix={mass!r}` takes the matrix from a maximum-likelihood fit: give it as `init`")
        if mass in ("init", "fixed") and settings["sampler"] not in self.MASS_MATRIX_SAMPLERS:
            raise OptionError(f"`mass_matrix={mass!r}` needs a sampler that takes a starting mass matrix ({list(self.MASS_MATRIX_SAMPLERS)}); "
                              f"{settings['sampler']!r} takes none")
        if settings["sampler"] in _JAX_SAMPLERS:
            _require_package(settings["sampler"])

    def mass_matrix(self, choice: str, init, sampler: str) -> tuple[str, str]:
        """The mass-matrix setting used and why (``"auto"``: from the init fit where the sampler takes it)."""
        if choice != "auto":
            return choice, "given"
        if init is None:
            return "adapt", "auto: no init fit"
        if sampler not in self.MASS_MATRIX_SAMPLERS:
            return "adapt", f"auto: sampler {sampler!r} takes no starting mass matrix (sampler='numpyro' does)"
        return "init", "auto: from the init fit"

    def chain_method(self, sampler: str) -> tuple[str, str]:
        """How JAX sampler ``sampler`` runs several chains here, and why.

        Vectorised chains step in lockstep (every leapfrog step, and every step of the ODE
        solver inside it, waits for the slowest chain): an accelerator hides that, a CPU pays it
        in full, so on CPU the chains run one after another, each using every core through the
        likelihood's subject split. Parallel chains (``jax.pmap``) are not used: diffrax's
        reverse mode fails under ``pmap`` (design/STACK.md), and the split already fills the cores.
        """
        import jax

        backend = jax.default_backend()
        if backend != "cpu":
            return "vectorized", f"{backend}: one device runs the chains together"
        if "sequential" not in self.SAMPLER_CHAIN_METHODS[sampler]:
            return "vectorized", f"cpu, but {sampler} has no sequential method"
        return "sequential", "cpu: lockstep chains would wait for each other"

    def parameterization(self, model, choice, init) -> tuple[dict, str]:
        """Each estimated IIV parameter's parameterisation and the rule that chose it."""
        from .pymc_model import random_effect_parameters

        with_iiv = random_effect_parameters(model)
        if isinstance(choice, dict):
            return {n: choice.get(n, "noncentered") for n in with_iiv}, "given (parameters not named: noncentered)"
        if choice in PARAMETERIZATIONS:
            return {n: choice for n in with_iiv}, "given"
        shrinkage = (init.info.get("eta_shrinkage_percent") or {}) if init is not None else {}
        if not shrinkage:
            return {n: "noncentered" for n in with_iiv}, "auto without an init fit's shrinkage: noncentered"
        rule = f"auto: centered where the init fit's eta-shrinkage < {self.CENTRED_BELOW_SHRINKAGE:g}%, else noncentered"
        return {n: "centered" if shrinkage.get(n, 100.0) < self.CENTRED_BELOW_SHRINKAGE else "noncentered" for n in with_iiv}, rule

    def run(self, model, subjects, *, options, seed, progressbar, sampler, draws, tune, chains, predictive_draws, init, parameterization,
            mass_matrix):
        import arviz as az
        import pymc as pm
        import xarray as xr

        from .fit import Fit, initial_values, warn_convergence
        from .pymc_model import build_pymc_model, estimated_parameters, random_effect_parameters

        t0 = time.perf_counter()
        chosen, rule = self.parameterization(model, parameterization, init)
        pmodel = build_pymc_model(model, subjects, options=options, parameterization=chosen)
        initvals = None if init is None else initial_values(pmodel, init, subjects)
        mass, mass_rule = self.mass_matrix(mass_matrix, init, sampler)
        chain_method, chain_rule = self.chain_method(sampler) if sampler in _JAX_SAMPLERS else ("", "")
        jax_nuts = {"chain_method": chain_method}
        if mass != "adapt":
            from .warm_start import dispersed_starts, has_cross_covariance, initial_inverse_mass_matrix

            try:
                inv_mass = initial_inverse_mass_matrix(pmodel, init, subjects)
            except OptionError as exc:
                if mass_matrix != "auto":
                    raise
                # "auto" takes the matrix where the init fit has one; where it has none, say so
                warnings.warn(f"mass_matrix='auto': no starting mass matrix from the init fit ({exc}); adapted from the identity",
                              Il2pkpdWarning, stacklevel=4)
                mass, mass_rule = "adapt", f"auto: the init fit gives none ({exc})"
            else:
                if not has_cross_covariance(init):
                    mass_rule += ("; block-diagonal: the init fit does not record how its modes move with its estimates "
                                  "(written by an older il2pkpd), so random effects and population parameters start uncorrelated")
                    warnings.warn("the init fit does not record the sensitivity of its conditional modes (an older fit): the starting mass "
                                  "matrix is block-diagonal, which is slow on a centred parameter's ridge; refit it to get the cross terms",
                                  Il2pkpdWarning, stacklevel=4)
                # NumPyro ravels PyMC's initial points in initial_point() order, as the matrix is laid out
                jax_nuts.update(inverse_mass_matrix=inv_mass, dense_mass=True, adapt_mass_matrix=(mass == "init"), jitter=False)
                initvals = dispersed_starts(pmodel, initvals, inv_mass, chains, seed)
        var_names = estimated_parameters(model) + [f"omega_{n}" for n in random_effect_parameters(model)] + [
            v for v in pmodel.named_vars if v.startswith("sigma_")]
        info = {**_provenance(model, subjects, seed), "method": "nuts", "sampler": sampler, "draws": draws, "tune": tune, "chains": chains,
                "solver": {"solver": options.solver, "rtol": options.rtol, "atol": options.atol},
                "initial_values": "the maximum-likelihood fit given as init" if init is not None else "PyMC's defaults (model file)",
                "parameterization": chosen, "parameterization_rule": rule,
                "mass_matrix": {"setting": mass, "rule": mass_rule, "description": self.MASS_MATRIX[mass]}}
        if sampler in _JAX_SAMPLERS:
            info["chain_method"] = {"setting": chain_method, "rule": chain_rule, "description": self.CHAIN_METHODS[chain_method]}
        if mass != "adapt":
            info["initial_values"] += ("; chains 2.. at draws from its normal approximation (dispersed_starts)" if chains > 1 else "")
        with pmodel:
            if sampler == "nutpie":
                idata = pm.sample(draws=draws, tune=tune, chains=chains, nuts_sampler="nutpie", random_seed=seed, progressbar=progressbar,
                                  backend="jax", compile_kwargs={"gradient_backend": "jax"}, initvals=initvals)
            elif sampler in _JAX_SAMPLERS:
                idata = pm.sample(draws=draws, tune=tune, chains=chains, nuts_sampler=sampler, random_seed=seed, progressbar=progressbar,
                                  nuts=jax_nuts, initvals=initvals)
            else:
                idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=1, random_seed=seed, progressbar=progressbar,
                                  compile_kwargs={"mode": "JAX"}, initvals=initvals)
            with warnings.catch_warnings():
                # the Potential is the likelihood: the prior group must ignore it, which is what PyMC warns about
                warnings.filterwarnings("ignore", message="The effect of Potentials", category=UserWarning)
                prior = pm.sample_prior_predictive(draws=max(100, predictive_draws), var_names=var_names, random_seed=seed)
        info["sampling_wall_time_s"] = time.perf_counter() - t0
        groups = {name: idata[name].to_dataset() for name in idata.children}
        groups["prior"] = prior["prior"].to_dataset()
        if predictive_draws:
            from .posterior import derived_groups

            loglik = pmodel.il2pkpd_loglik
            groups.update(derived_groups(model, loglik, groups["posterior"], loglik.covariates(), max_draws=predictive_draws, seed=seed))
        idata = xr.DataTree.from_dict(groups)
        info["wall_time_s"] = time.perf_counter() - t0
        summary = az.summary(idata, var_names=var_names)
        warn_convergence(idata, summary)
        estimates = {k: float(summary.loc[k, "mean"]) for k in var_names}
        info["divergences"] = int(np.asarray(idata["sample_stats"]["diverging"].values).sum()) if "sample_stats" in idata.children else 0
        return Fit(model.name, summary, info, estimates, idata)


class JointMap(Estimator):
    """The joint posterior mode (population parameters and random effects together)."""

    description = "MAP: the joint posterior mode over population parameters and random effects (no uncertainty)"

    def run(self, model, subjects, *, options, seed, progressbar):
        import pandas as pd

        from .fit import Fit
        from .pymc_model import MAP_GRADIENT_TOL, estimated_parameters, fit_map

        t0 = time.perf_counter()
        est, optimizer = fit_map(model, subjects, options=options, seed=seed)
        names = estimated_parameters(model)
        var_names = [k for k in names + [f"omega_{n}" for n in names] if k in est] + [k for k in est if k.startswith("sigma_")]
        info = {**_provenance(model, subjects, seed), "method": "map", "sampler": "map", "optimizer": optimizer,
                "solver": {"solver": options.solver, "rtol": options.rtol, "atol": options.atol}, "wall_time_s": time.perf_counter() - t0}
        if not optimizer["converged"]:
            warnings.warn(f"MAP did not converge: {optimizer['message']} after {optimizer['iterations']} iterations "
                          f"({optimizer['evaluations']} evaluations), largest gradient component {optimizer['gradient_norm']:.3g} "
                          f"(converged means < {MAP_GRADIENT_TOL:g}); the estimates are where the optimiser stopped, not a mode. "
                          "Check the priors' scales and starting values (the model file's values)", Il2pkpdWarning, stacklevel=4)
        summary = pd.DataFrame({"map": {k: float(est[k]) for k in var_names}})
        return Fit(model.name, summary, info, {k: est[k] for k in est}, None)


class Marginal(Estimator):
    """Maximum likelihood by a Laplace-type method of :data:`~il2pkpd.likelihood.METHODS`."""

    settings = {"sir_samples": 0, "sir_iterations": 1, "priors": False, "restarts": 0, "ofv_tol": None}
    solver_defaults = "estimate"

    def __init__(self, method: str):
        self.method = method
        self.description = METHODS[method].description

    def check(self, settings: dict) -> None:
        n = settings["sir_samples"]
        if isinstance(n, bool) or int(n) != n or n < 0 or 0 < n < 10:
            raise OptionError(f"`sir_samples` must be 0 (none) or an integer >= 10, got {n!r}")
        _positive_int("sir_iterations", settings["sir_iterations"])
        if settings["sir_iterations"] > 1 and not n:
            raise OptionError(f"`sir_iterations={settings['sir_iterations']}` iterates SIR: give `sir_samples` too")
        _positive_int("restarts", settings["restarts"], lowest=0)
        if not isinstance(settings["priors"], bool):
            raise OptionError(f"`priors` must be True or False, got {settings['priors']!r}")
        tol = settings["ofv_tol"]
        if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol) and tol > 0):
            raise OptionError(f"`ofv_tol` must be a positive number (an OFV change, e.g. 1e-3), got {tol!r}")

    #: the share of samples resampled in SIR iteration 1, 2, 3 and after (PsN's default schedule, Dosne et al. 2017)
    SIR_RESAMPLED_SHARE = (0.2, 0.4, 0.5)

    def run(self, model, subjects, *, options, seed, progressbar, sir_samples, sir_iterations, priors, restarts, ofv_tol):
        from .estimation import estimate, sir
        from .fit import Fit

        est = estimate(model, subjects, method=self.method, options=options, progress=progressbar, priors=priors, restarts=restarts, seed=seed,
                       ofv_tol=ofv_tol)
        kinds = est.table["kind"]
        per_observation = {}
        for name in est.estimates:
            if kinds[name] == "SIGMA":
                per_observation.setdefault(name.rsplit("_", 1)[0], []).append(name)

        def fit_name(name: str) -> tuple[str, object]:
            """The Fit's name of an estimated quantity and the map from the estimate's scale."""
            if name.startswith("omega2_"):
                return f"omega_{name[7:]}", np.sqrt  # the SD, as model files and simulate() take it
            if kinds[name] == "SIGMA":
                obs, key = name.rsplit("_", 1)
                return residual_parameter_name(obs, key, len(per_observation[obs])), np.asarray
            return name, np.asarray

        estimates, names = {}, {}
        for name, value in est.estimates.items():
            new, transform = fit_name(name)
            estimates[new], names[name] = float(transform(value)), new
        info = {**_provenance(model, subjects, seed), "ofv": est.ofv,
                **{k: v for k, v in est.info.items() if k not in ("covariance_step", "eta_conditional_cov", "eta_sensitivity")},
                "covariance_step": {k: v for k, v in est.info.get("covariance_step", {}).items() if not k.endswith("_u")},
                # sensitivity: d eta_hat_i / d estimate, (subjects, random effects, table rows), the
                # table's scale (omega2 a variance); with the covariance, Cov(eta_i, estimates)
                "ebe": {"names": est.iiv_names, "subjects": [str(r.subject) for r in subjects.records], "eta": est.eta.tolist(),
                        "conditional_cov": est.info["eta_conditional_cov"],
                        **({"sensitivity": est.info["eta_sensitivity"]} if "eta_sensitivity" in est.info else {})},
                "obj_per_subject": est.obj.tolist(), "fit_names": names}  # table row -> the estimate's name (omega SD, sigma_<obs>)
        if not sir_samples:
            return Fit(model.name, est.table, info, estimates, None)
        import xarray as xr

        if est.covariance is None:
            warnings.warn(f"no SIR: it samples from the covariance step's matrix, and the step failed "
                          f"({info['covariance_step'].get('reason')}); the fit has the estimate only", Il2pkpdWarning, stacklevel=4)
            return Fit(model.name, est.table, {**info, "sir": {"ok": False, "reason": "covariance step failed"}}, estimates, None)
        shares = [self.SIR_RESAMPLED_SHARE[min(i, len(self.SIR_RESAMPLED_SHARE) - 1)] for i in range(sir_iterations)]
        res = sir(est, n_samples=[sir_samples] * sir_iterations, n_resamples=[max(2, int(sir_samples * f)) for f in shares], seed=seed,
                  progress=progressbar, iterations=sir_iterations)
        info["sir"] = {k: v for k, v in res.items() if k != "draws"}
        data_vars = {}
        for name, values in res["draws"].items():
            new, transform = fit_name(name)
            data_vars[new] = (("chain", "draw"), transform(values)[None, :])
        what = "posterior (MAP-FOCE-I, the model file's priors)" if priors else "parameter uncertainty, not a Bayesian posterior"
        label = f"SIR resamples (Dosne et al. 2016) of the {self.method} estimate: {what}"
        idata = xr.DataTree.from_dict({"posterior": xr.Dataset(data_vars, attrs={"kind": label})})
        return Fit(model.name, est.table, info, estimates, idata)


def _require_package(sampler: str) -> None:
    import importlib.metadata
    import importlib.util

    from packaging.version import Version

    if importlib.util.find_spec(sampler) is None:
        raise OptionError(f"sampler={sampler!r} needs the {sampler!r} package, which is not installed: "
                          f"pip install 'il2pkpd[samplers]' (or pip install {sampler}); 'nutpie' needs nothing more")
    if sampler == "blackjax":
        version = importlib.metadata.version("blackjax")
        if Version(version).release[:2] >= (1, 6):
            # PyMC passes `progress_bar` to window_adaptation, which BlackJAX >= 1.6 forwards
            # to the NUTS kernel: a TypeError at the first warm-up step (pymc-devs/pymc#8367)
            raise OptionError(f"sampler='blackjax' fails with BlackJAX {version} under this PyMC (pymc-devs/pymc#8367): "
                              "pip install 'blackjax<1.6', or use sampler='nutpie' or 'numpyro'")


#: ``fit(method=...)``: the estimators, by name (one table; fit, the CLI and the docs read it)
ESTIMATORS: dict[str, Estimator] = {"nuts": Nuts(), "map": JointMap(), **{m: Marginal(m) for m in METHODS}}
