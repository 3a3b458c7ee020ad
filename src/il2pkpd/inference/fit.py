"""``il2pkpd.fit``: fits of a model to individual data, with diagnostics and provenance.

``fit(method=...)`` dispatches to an estimator of :data:`~.estimators.ESTIMATORS` (NUTS, the
joint MAP, FOCE, FOCE-I, Laplace); every method returns the same :class:`Fit`. NUTS
samplers: ``"nutpie"`` (default; the log-density and gradient compiled by JAX), ``"pymc"``
(chains one after another: forking after JAX starts deadlocks, see STACK.md), ``"numpyro"``,
``"blackjax"``. Convergence problems are warned about
(:class:`~il2pkpd.errors.Il2pkpdWarning`), never hidden: divergences, R-hat above 1.01, bulk
ESS below 400; a maximum-likelihood fit that did not converge says so.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, Il2pkpdWarning, OptionError
from ..model import model_hash as model_hash
from ..model import residual_parameter_name
from ..solve import SolverOptions
from ..solver_options import DEFAULT_SOLVER_OPTIONS
from ..likelihood import SubjectData, subject_data
from .estimators import ESTIMATORS, NUTS_SAMPLERS

__all__ = ["Fit", "fit", "model_hash", "data_hash", "SAMPLERS", "FIT_METHODS", "initial_values"]

#: ``fit(sampler=...)`` with method "nuts" ("map" is the older spelling of method="map")
SAMPLERS = (*NUTS_SAMPLERS, "map")
#: ``fit(method=...)``: the estimators' names
FIT_METHODS = tuple(ESTIMATORS)


def data_hash(data: SubjectData) -> str:
    """SHA-256 of the records and covariates the fit used."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data.cov, dtype=float).tobytes())
    for j, v in sorted((data.row_cov or {}).items()):
        h.update(repr(j).encode() + np.ascontiguousarray(v, dtype=float).tobytes())
    for recs in data.records:
        h.update(repr(recs.subject).encode())
        for r in recs:
            h.update(repr((r.time, r.evid, r.amt, r.cmt, r.rate, r.ii, r.addl, r.ss, r.dvid, r.dv, r.cens, r.lloq, r.event)).encode())
    return h.hexdigest()


@dataclass
class Fit:
    """A fit: ArviZ data (``idata``, an xarray DataTree), a summary table and provenance.

    Attributes
    ----------
    idata
        Posterior (and sample stats) as ArviZ/xarray DataTree (``None`` for MAP).
    summary
        One row per population parameter: typical values under their own names,
        ``omega_<name>``, ``sigma_<observation>``; mean, sd, interval, R-hat, ESS.
    info
        Provenance: il2pkpd version, model and data hashes, seed, sampler settings, wall time.
    estimates
        Point estimates (posterior means, or the MAP).
    """

    model_name: str
    summary: object
    info: dict
    estimates: dict = field(default_factory=dict)
    idata: object = None

    def population_draws(self) -> dict[str, np.ndarray]:
        """Posterior draws (chains x draws flattened) of typical values and omegas, for
        :func:`il2pkpd.simulate` (``params=fit``)."""
        if self.idata is None:
            return {k: np.atleast_1d(v) for k, v in self.estimates.items() if np.ndim(v) == 0 and not k.startswith(("sigma_", "z_"))}
        post = self.idata["posterior"]
        out = {}
        for name in post.data_vars:
            if name.startswith(("sigma_", "z_", "eta_")):
                continue
            vals = np.asarray(post[name].values)
            if vals.ndim == 2:
                out[name] = vals.reshape(-1)
        return out


def _subject_data(data, model, covariates=None) -> SubjectData:
    if isinstance(data, (str, Path)):  # files are read at the edges (io), never here
        raise DataFormatError(f"`data` must be a dataset, records or SubjectData here, got the path {str(data)!r}. "
                              f"Read it first: il2pkpd.read_nonmem_csv({str(data)!r}), or call il2pkpd.fit, which does.")
    return subject_data(model, data, covariates)


def fit(model, data, *, method: str = "nuts", seed: int = 0, options: SolverOptions | None = None, progressbar: bool = False,
        covariates=None, sampler: str | None = None, draws: int | None = None, tune: int | None = None, chains: int | None = None,
        predictive_draws: int | None = None, init: Fit | None = None, parameterization: str | dict | None = None,
        mass_matrix: str | None = None, sir_samples: int | None = None, sir_iterations: int | None = None, priors: bool | None = None, restarts: int | None = None, ofv_tol: float | None = None) -> Fit:
    """Fit ``model`` to ``data`` (a NONMEM-style dataset or a list of Records).

    Parameters
    ----------
    model
        A model (priors and IIV from its file; see :func:`build_pymc_model`).
    data
        Dataset (validated with DV required; covariates from its columns, time-varying ones
        by NONMEM's rule), per-subject records (with ``covariates``), or a
        :class:`~il2pkpd.likelihood.SubjectData`. :func:`il2pkpd.fit` (the public entry
        point) also takes the path of a NONMEM-format CSV file, and a model by name or path.
    method
        A key of :data:`FIT_METHODS` (the estimators of :mod:`.estimators`): ``"nuts"``
        (default: the posterior), ``"map"`` (the joint posterior mode; no uncertainty), or
        maximum likelihood with the random effects integrated out: ``"focei"``, ``"foce"``,
        ``"laplace"`` (:func:`~il2pkpd.inference.estimation.estimate`). Those return a fit
        without draws: ``summary`` is the THETA/OMEGA/SIGMA table with standard errors,
        ``estimates`` the point estimates (with ``omega_<name>`` as SDs, for
        ``simulate(params=fit)``), ``info`` the OFV, covariance step, EBEs and diagnostics.
    seed
        Random seed.
    options
        Solver settings for the likelihood (default: the method's, ``DEFAULT_SOLVER_OPTIONS["fit"]``
        for NUTS and MAP, ``["estimate"]`` for the maximum-likelihood methods).
    progressbar
        Show the sampler's progress, or the optimiser's iterations (iteration, OFV, gradient).
    covariates
        With records only: covariate name -> a number or one value per subject (required
        when the model has covariates). A dataset gives them as columns; a missing column
        is an error, never a silent default.

    Other Parameters
    ----------------
    sampler, draws, tune, chains, predictive_draws, init, parameterization, mass_matrix
        ``method="nuts"`` only. ``sampler``: ``"nutpie"`` (default: Rust NUTS, chains in
        threads), ``"pymc"`` (chains one after another), ``"numpyro"`` or ``"blackjax"``
        (through PyMC's JAX backend, chains vectorised); ``sampler="map"`` is
        ``method="map"``. ``draws``/``tune``/``chains``: 1000/1000/4. ``predictive_draws``
        (200): posterior draws (evenly thinned) for the ``log_likelihood`` (per subject) and
        ``posterior_predictive`` groups; 0 skips them. ``init``: a maximum-likelihood fit of
        the same model and data whose estimates and conditional modes start every chain
        (typical values, ``omega_*``, ``sigma_*``, ``z_<name> = eta / omega``).
        ``parameterization``: ``"auto"`` (default: with ``init``, each random effect centred
        where the init fit's eta-shrinkage is below 30%, non-centred otherwise; without
        ``init``, non-centred), ``"centered"``, ``"noncentered"``, or a dict by parameter
        (see :func:`~.pymc_model.build_pymc_model`); the choice is in ``info``.
        ``mass_matrix``: ``"auto"`` (default: ``"init"`` when ``init`` is given and the
        sampler takes a starting matrix, i.e. ``sampler="numpyro"``; ``"adapt"`` otherwise),
        ``"adapt"`` (the sampler's own warm-up from the identity), ``"init"`` (a dense matrix
        from the init fit, :func:`~.warm_start.initial_inverse_mass_matrix`, then adapted in
        warm-up; chains 2.. start at draws from the fit's normal approximation), or
        ``"fixed"`` (that matrix throughout, only the step size adapted: the shortest
        warm-up). What was used, and why, is in ``info["mass_matrix"]``.
    sir_samples, sir_iterations, priors, restarts, ofv_tol
        Maximum-likelihood methods only. ``sir_samples`` (0): draw this many SIR samples
        (:func:`~il2pkpd.inference.estimation.sir`) and keep a fifth as the fit's
        ``idata["posterior"]``, labelled as SIR parameter uncertainty (or, with priors, the
        MAP-FOCE-I posterior), which ``simulate(params=fit)`` and sweeps draw from.
        ``sir_iterations`` (1): iterate SIR (Dosne et al. 2017), each iteration drawing
        ``sir_samples`` from the previous resamples' covariance and keeping 20%, 40%, then
        50% of them (PsN's schedule); the last iteration's resamples are the draws.
        ``priors`` (False): MAP-FOCE-I with the model file's priors. ``restarts`` (0):
        estimate again from perturbed starts and keep the lowest objective. ``ofv_tol``
        (None): stop once the OFV has stopped falling (by less than this over 5 iterations,
        parameters steady to ~3 digits; :func:`~il2pkpd.inference.estimation.estimate`).

    A setting the chosen method does not take is refused (:class:`OptionError` naming the
    methods that take it), never ignored.

    Returns
    -------
    Fit
        ``idata`` groups (NUTS): ``posterior``, ``sample_stats``, ``prior`` (population
        parameters), ``log_likelihood`` (``subject_loglik``: leave-one-subject-out is the
        unit of LOO), ``posterior_predictive`` (``dv`` with residual error, ``ipred``),
        ``observed_data``.
    """
    given = {"sampler": sampler, "draws": draws, "tune": tune, "chains": chains, "predictive_draws": predictive_draws, "init": init,
             "parameterization": parameterization, "mass_matrix": mass_matrix, "sir_samples": sir_samples, "sir_iterations": sir_iterations, "priors": priors, "restarts": restarts,
             "ofv_tol": ofv_tol}
    given = {k: v for k, v in given.items() if v is not None}
    if method not in ESTIMATORS:
        raise OptionError(f"`method` must be one of {list(ESTIMATORS)}, got {method!r}")
    if method == "nuts" and given.get("sampler") == "map":  # the older spelling of method="map"
        method = "map"
        del given["sampler"]
    estimator = ESTIMATORS[method]
    for name, value in given.items():
        if name not in estimator.settings:
            takers = [m for m, e in ESTIMATORS.items() if name in e.settings]
            which = f"method={takers[0]!r}" if len(takers) == 1 else f"methods {takers}"
            shown = repr(value) if isinstance(value, (int, float, str)) else f"<{type(value).__name__}>"
            raise OptionError(f"`{name}` applies to {which}, got {name}={shown} with method={method!r}")
    settings = {**estimator.settings, **given}
    estimator.check(settings)
    subjects = _subject_data(data, model, covariates)
    options = options or DEFAULT_SOLVER_OPTIONS[estimator.solver_defaults]
    return estimator.run(model, subjects, options=options, seed=seed, progressbar=progressbar, **settings)


def initial_values(pmodel, init: Fit, subjects: SubjectData) -> dict[str, object]:
    """NUTS starting values (the PyMC model's free variables, natural scale) from a
    maximum-likelihood fit: its estimates by name and, from its conditional modes matched to
    the subjects by ID, ``z_<name> = eta / omega`` (non-centred) or ``eta_<name>`` (centred).

    Raises
    ------
    OptionError
        The fit's subjects are not the data's (other IDs), or it lacks a free variable.
    """
    free = {v.name for v in pmodel.free_RVs}
    out = {k: float(v) for k, v in init.estimates.items() if k in free}
    ebe = init.info.get("ebe", {})
    ids = [str(r.subject) for r in subjects.records]
    if ebe and ebe.get("subjects") != ids:
        raise OptionError(f"`init` was fitted to subjects {ebe.get('subjects')[:5]}... and this data has {ids[:5]}...: not the same data")
    eta = np.asarray(ebe.get("eta", []), dtype=float)
    for k, name in enumerate(ebe.get("names", [])):
        z, omega = f"z_{name}", init.estimates.get(f"omega_{name}")
        if z in free and omega:
            out[z] = eta[:, k] / omega
        if f"eta_{name}" in free:  # a centred random effect
            out[f"eta_{name}"] = eta[:, k]
    held = held_residual_parameters(init)
    out.update({name: value for name, value in held.items() if name in free and name not in out})
    missing = sorted(free - set(out))
    if missing:
        raise OptionError(f"`init` has no value for {missing}: fit the same model by maximum likelihood first")
    return out


def held_residual_parameters(init: Fit) -> dict[str, float]:
    """Residual parameters a maximum-likelihood fit held at the model file's values (no rows of
    their observation type, ``info["not_estimated"]``), by the PyMC model's names
    (``sigma_<obs>`` for a one-parameter error model, ``sigma_<obs>_<key>`` otherwise)."""
    held = init.info.get("not_estimated") or {}
    by_obs: dict[str, dict] = {}
    for key, entry in held.items():
        obs, _, which = key.rpartition("_")
        by_obs.setdefault(obs, {})[which] = float(entry["value"])
    # an observation type without rows has every parameter of its error model held
    return {residual_parameter_name(obs, k, len(values)): v for obs, values in by_obs.items() for k, v in values.items()}


def warn_convergence(idata, summary) -> None:
    """Warn (:class:`~il2pkpd.errors.Il2pkpdWarning`) of divergences, R-hat above 1.01 and bulk ESS below 400."""
    div = int(np.asarray(idata["sample_stats"]["diverging"].values).sum()) if "sample_stats" in idata.children else 0
    total = int(np.prod(np.asarray(idata["posterior"][next(iter(idata["posterior"].data_vars))].values).shape[:2]))
    if div:
        warnings.warn(f"{div} divergent transitions out of {total} draws ({100 * div / total:.1f}%): the posterior may be biased; "
                      "reparameterise or raise target_accept", Il2pkpdWarning, stacklevel=4)
    rhat = summary["r_hat"].astype(float)
    if (rhat > 1.01).any():
        worst = rhat.idxmax()
        warnings.warn(f"R-hat above 1.01 for {list(rhat[rhat > 1.01].index)} (worst {worst}: {rhat[worst]:.3f}); run longer chains",
                      Il2pkpdWarning, stacklevel=4)
    ess = summary["ess_bulk"].astype(float)
    if (ess < 400).any():
        worst = ess.idxmin()
        warnings.warn(f"bulk ESS below 400 for {list(ess[ess < 400].index)} (lowest {worst}: {ess[worst]:.0f}); run more draws",
                      Il2pkpdWarning, stacklevel=4)
