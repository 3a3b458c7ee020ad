"""Build a PyMC model from a model file and a dataset.

* population parameters: the model file's priors (parameters without a prior, or marked
  ``fixed``, stay at their value);
* inter-individual variability: for parameters with ``iiv`` in the file, non-centred random
  effects ``eta_<name>[subject] = omega_<name> * z``, ``z ~ N(0, 1)``, with
  ``omega_<name> ~ HalfNormal(0.5)`` (BRIEF 8.1) and the file's transform (lognormal, normal,
  logit);
* residual errors: ``sigma_<observation>`` (``_add``/``_prop`` for a combined model) with
  half-normal priors of scale twice the file's value;
* likelihood: the JAX joint log-likelihood (:class:`~il2pkpd.likelihood.JointLoglik`),
  wrapped once with ``pytensor.wrap_jax`` so that NUTS and optimisers get exact gradients
  through the ODE solve (no SciPy inside an Op, no finite differences).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..dosing import Records
from ..errors import DataFormatError, ModelSpecError, OptionError
from ..model import ERROR_MODEL_PARAMETERS, residual_parameter_name
from ..likelihood import JointLoglik, SubjectData
from ..simulation import apply_iiv
from ..solve import SolverOptions
from ..solver_options import DEFAULT_SOLVER_OPTIONS
from .priors import OMEGA_PRIOR, sigma_prior

__all__ = ["build_pymc_model", "fit_map", "estimated_parameters", "MAP_GRADIENT_TOL", "PARAMETERIZATIONS"]

_ERROR_KEYS = ERROR_MODEL_PARAMETERS


def estimated_parameters(model) -> list[str]:
    """Parameters the fit estimates: not ``fixed`` and with a prior in the model file."""
    return [p.name for p in model.parameters if not p.fixed and p.prior is not None]


def random_effect_parameters(model) -> list[str]:
    """Estimated parameters with a random effect in the PyMC model (``iiv`` with omega > 0)."""
    names = set(estimated_parameters(model))
    return [p.name for p in model.parameters if p.name in names and p.iiv is not None and p.iiv.omega > 0]


def _prior(pm, p):
    d = p.prior
    kind = d["dist"]
    if kind == "lognormal":
        return pm.LogNormal(p.name, mu=math.log(d["median"]), sigma=d["sigma"])
    if kind == "normal":
        return pm.Normal(p.name, mu=d["mean"], sigma=d["sd"])
    if kind == "truncnormal":
        return pm.TruncatedNormal(p.name, mu=d["mean"], sigma=d["sd"], lower=d["lower"], upper=d["upper"])
    if kind == "halfnormal":
        return pm.HalfNormal(p.name, sigma=d["sd"])
    if kind == "beta":
        return pm.Beta(p.name, mu=d["mean"], sigma=d["sd"])
    if kind == "uniform":
        return pm.Uniform(p.name, lower=d["lower"], upper=d["upper"])
    raise ModelSpecError(f"prior {kind!r} of `{p.name}` has no PyMC counterpart")  # pragma: no cover (validated in the spec)


#: the ways a random effect can enter the PyMC model
PARAMETERIZATIONS = ("centered", "noncentered")


def build_pymc_model(model, subjects: SubjectData | Sequence[Records], *, options: SolverOptions | None = None,
                     parameterization: Mapping[str, str] | None = None):
    """The PyMC model of ``subjects`` under ``model`` (see the module docstring).

    ``parameterization`` maps an IIV parameter's name to ``"noncentered"`` (the default:
    ``eta = omega * z``, ``z ~ N(0, 1)``, free variable ``z_<name>``; best where the data say
    little about each subject, high shrinkage) or ``"centered"`` (``eta ~ N(0, omega)``, free
    variable ``eta_<name>``; best where they say much, low shrinkage: Betancourt & Girolami
    2015). Either way the posterior has ``eta_<name>``.

    ``subjects`` carries the covariates (:func:`~il2pkpd.likelihood.subject_data`); records
    alone are accepted only for a model without covariates.

    Returns
    -------
    pymc.Model
        With coords ``subject``; variables named as the model file's parameters,
        ``omega_<name>``, ``eta_<name>``, ``sigma_<observation>[_add|_prop]``.
    """
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    options = options or DEFAULT_SOLVER_OPTIONS["fit"]
    loglik = JointLoglik(model, subjects, options)
    subjects = loglik.subjects
    n = len(subjects)
    ids = [r.subject if r.subject is not None else i + 1 for i, r in enumerate(subjects)]
    cov = loglik.covariates()
    # A row with zero prediction under a proportional error has no finite likelihood for
    # any parameter value: say which rows, rather than let the sampler fail on NaN.
    problems = loglik.unweightable_observations(np.tile([p.value for p in model.parameters], (n, 1)), cov)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} rows)" if len(problems) > 5 else "")
        raise DataFormatError(f"{len(problems)} observation(s) have a structurally zero prediction, which their error model "
                              f"cannot weight (SD 0): {shown}. Pre-dose samples are the usual cause: set MDV = 1 on those rows, "
                              "drop them, or use a combined (additive + proportional) error model.")
    estimated = set(estimated_parameters(model))
    with_iiv = random_effect_parameters(model)
    parameterization = dict(parameterization or {})
    for name, kind in parameterization.items():
        if name not in with_iiv:
            raise OptionError(f"`parameterization` names {name!r}, which is not an estimated parameter with IIV: {with_iiv}")
        if kind not in PARAMETERIZATIONS:
            raise OptionError(f"`parameterization[{name!r}]` must be one of {list(PARAMETERIZATIONS)}, got {kind!r}")

    with pm.Model(coords={"subject": ids}) as pmodel:
        columns = []
        for p in model.parameters:
            pop = _prior(pm, p) if p.name in estimated else pt.as_tensor_variable(np.float64(p.value))
            if p.name in with_iiv:
                omega = pm.HalfNormal(f"omega_{p.name}", sigma=OMEGA_PRIOR["sd"])
                if parameterization.get(p.name, "noncentered") == "centered":
                    eta = pm.Normal(f"eta_{p.name}", 0.0, omega, dims="subject")
                else:
                    z = pm.Normal(f"z_{p.name}", 0.0, 1.0, dims="subject")
                    eta = pm.Deterministic(f"eta_{p.name}", omega * z, dims="subject")
                col = apply_iiv(p.iiv.kind, pop, eta, xp=pt)
            else:
                col = pt.zeros((n,)) + pop
            columns.append(col)
        theta = pt.specify_shape(pt.stack(columns, axis=1), (n, len(model.parameters)))
        errors = {}
        for o in model.observations:
            keys = _ERROR_KEYS[o.error.model]
            errors[o.name] = {}
            for k in keys:
                name = residual_parameter_name(o.name, k, len(keys))
                errors[o.name][k] = pm.HalfNormal(name, sigma=sigma_prior(getattr(o.error, k))["sd"])

        def joint(th, cv, err):
            total, _, _ = loglik._loglik(th, cv, err)
            return total

        ll = pytensor.wrap_jax(joint)(theta, pt.as_tensor_variable(np.asarray(cov, dtype=float)), errors)
        pm.Potential("loglik", ll)
    pmodel.il2pkpd_loglik = loglik
    return pmodel


def fit_map(model, subjects: SubjectData | Sequence[Records], *, options: SolverOptions | None = None, seed: int = 0,
            maxiter: int = 5000) -> tuple[dict, dict]:
    """Maximum a posteriori estimates (population parameters, omegas, sigmas, etas) as a
    dict of arrays (dims without chain/draw), and the optimiser's report.

    A fast path for notebooks and starting points; it is the joint mode over population
    parameters and random effects, not a marginal likelihood estimate (NONMEM's FOCE).

    Returns
    -------
    estimates, optimizer
        ``optimizer``: ``converged`` (L-BFGS-B reported success and the largest gradient
        component of the log-posterior on the unconstrained scale is below
        :data:`MAP_GRADIENT_TOL`), ``iterations``, ``evaluations``, ``gradient_norm`` (max
        absolute component), ``message`` (SciPy's), ``log_posterior``. A fit that did not
        converge is warned about (:class:`~il2pkpd.errors.Il2pkpdWarning`) by the caller.
    """
    import warnings

    import pymc as pm

    pmodel = build_pymc_model(model, subjects, options=options)
    with pmodel, warnings.catch_warnings():
        # PyMC's own "did not converge" UserWarning is replaced by ours, which says more
        warnings.filterwarnings("ignore", message="The optimizer did not converge", category=UserWarning)
        # the whole graph in JAX: the wrapped likelihood then runs natively, not in numba object mode
        # SciPy's default ftol (2.2e-9 relative) stops a MAP over hundreds of random effects
        # while gradients of ~0.3 remain (warfarin): stop on the gradient instead
        result = pm.find_MAP(progressbar=False, maxiter=maxiter, random_seed=seed, jitter=False, ftol=1e-13, gtol=1e-6,
                             return_inferencedata=True, compile_kwargs={"mode": "JAX"})
    post = result["posterior"]
    res = result["optimizer_result"].to_dataset()
    jac = np.asarray(res["jac"].values, dtype=float)
    grad = float(np.max(np.abs(jac))) if jac.size else 0.0
    optimizer = {
        "method": str(res["method"].values), "converged": bool(res["success"].values) and bool(np.isfinite(grad) and grad <= MAP_GRADIENT_TOL),
        "iterations": int(res["nit"].values), "evaluations": int(res["nfev"].values), "gradient_norm": grad,
        "message": str(res["message"].values), "log_posterior": -float(res["fun"].values), "maxiter": maxiter,
    }
    return {name: np.asarray(post[name].values)[0, 0] for name in post.data_vars}, optimizer


#: largest |d log posterior / d x| (unconstrained scale) at which a MAP counts as converged
MAP_GRADIENT_TOL = 1e-2
