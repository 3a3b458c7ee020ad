"""``il2pkpd.fit``: Bayesian fits of a model to individual data, with diagnostics and provenance.

Samplers: ``"nutpie"`` (default; NUTS with the log-density and gradient compiled by JAX),
``"pymc"`` (PyMC's NUTS, chains run one after another: forking after JAX starts deadlocks, see
STACK.md), ``"map"`` (joint MAP, a fast path; no uncertainty). Convergence problems are
warned about (:class:`~il2pkpd.errors.Il2pkpdWarning`), never hidden: divergences, R-hat
above 1.01, bulk ESS below 400.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, Il2pkpdWarning, OptionError
from ..model import model_hash as model_hash
from ..solve import SolverOptions
from ..solver_options import DEFAULT_SOLVER_OPTIONS
from ..likelihood import METHODS, SubjectData, subject_data
from .pymc_model import MAP_GRADIENT_TOL, build_pymc_model, estimated_parameters

__all__ = ["Fit", "fit", "model_hash", "data_hash", "SAMPLERS", "FIT_METHODS", "initial_values"]

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax", "map")
#: ``fit(method=...)``: the posterior by NUTS (``sampler`` picks the implementation, or "map"),
#: or maximum likelihood by a Laplace-type method of :data:`il2pkpd.likelihood.METHODS`
FIT_METHODS = ("nuts", *METHODS)
_JAX_SAMPLERS = ("numpyro", "blackjax")


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


def fit(model, data, *, draws: int = 1000, tune: int = 1000, chains: int = 4, sampler: str = "nutpie", seed: int = 0,
        options: SolverOptions | None = None, progressbar: bool = False, predictive_draws: int = 200, covariates=None,
        method: str = "nuts", sir_samples: int = 0, init: Fit | None = None) -> Fit:
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
    draws, tune, chains
        NUTS settings (ignored by ``"map"``).
    sampler
        ``"nutpie"`` (default: Rust NUTS, chains in threads), ``"pymc"`` (PyMC's NUTS, chains
        one after another), ``"numpyro"`` or ``"blackjax"`` (through PyMC's JAX backend;
        chains vectorised in one process: reverse-mode diffrax under ``jax.pmap`` fails, see
        ``shared/design/STACK.md``), or ``"map"`` (posterior mode, no sampling).
    seed
        Random seed.
    options
        Solver settings for the likelihood (default ``DEFAULT_SOLVER_OPTIONS["fit"]``: rtol 1e-6, atol 1e-9).
    progressbar
        Show the sampler's progress.
    predictive_draws
        Posterior draws (evenly thinned) used for the ``log_likelihood`` (per subject) and
        ``posterior_predictive`` groups; 0 skips them.
    covariates
        With records only: covariate name -> a number or one value per subject (required
        when the model has covariates). A dataset gives them as columns; a missing column
        is an error, never a silent default.
    method
        ``"nuts"`` (default: the posterior, by ``sampler``), or maximum likelihood with the
        random effects integrated out: ``"focei"``, ``"foce"`` or ``"laplace"``
        (:func:`~il2pkpd.inference.estimation.estimate`; priors unused). Those return a fit
        without draws: ``summary`` is the THETA/OMEGA/SIGMA table with standard errors,
        ``estimates`` the point estimates (with ``omega_<name>`` as SDs, for
        ``simulate(params=fit)``), ``info`` the OFV, covariance step, EBEs and diagnostics.
    init
        With ``method="nuts"``: a maximum-likelihood fit of the same model and data
        (``fit(method="focei")``) whose estimates and conditional modes start every chain
        (typical values, ``omega_*``, ``sigma_*``, and ``z_<name> = eta / omega`` per subject), so
        warm-up starts in the bulk of the posterior instead of at the model file's values.
    sir_samples
        With a maximum-likelihood ``method``: draw this many SIR samples
        (:func:`~il2pkpd.inference.estimation.sir`) and keep a fifth of them as resamples,
        the fit's ``idata["posterior"]`` (labelled as SIR parameter uncertainty, not a
        Bayesian posterior), which ``simulate(params=fit)`` and sweeps then draw from.

    Returns
    -------
    Fit
        ``idata`` groups: ``posterior``, ``sample_stats``, ``prior`` (population parameters),
        ``log_likelihood`` (``subject_loglik``: leave-one-subject-out is the unit of LOO),
        ``posterior_predictive`` (``dv`` with residual error, ``ipred``), ``observed_data``.
    """
    import arviz as az
    import pymc as pm

    from .. import __version__

    if method not in FIT_METHODS:
        raise OptionError(f"`method` must be one of {list(FIT_METHODS)}, got {method!r}")
    if int(sir_samples) != sir_samples or sir_samples < 0 or 0 < sir_samples < 10:
        raise OptionError(f"`sir_samples` must be 0 (none) or an integer >= 10, got {sir_samples!r}")
    if method != "nuts":
        nuts_only = {"sampler": (sampler, "nutpie"), "draws": (draws, 1000), "tune": (tune, 1000), "chains": (chains, 4),
                     "predictive_draws": (predictive_draws, 200), "init": (init, None)}
        for name, (given, default) in nuts_only.items():
            if given is not default and given != default:
                raise OptionError(f"`{name}` applies to method='nuts', got {name}={given!r} with method={method!r}")
        return _fit_by_marginal_likelihood(model, _subject_data(data, model, covariates), method, options, progressbar, int(sir_samples), seed)
    if sir_samples:
        raise OptionError(f"`sir_samples` applies to the maximum-likelihood methods {list(METHODS)}, not method='nuts'")
    if init is not None and sampler == "map":
        raise OptionError("`init` starts NUTS chains; sampler='map' starts from the model file's values")
    if init is not None and init.info.get("method") not in METHODS:
        raise OptionError(f"`init` must be a maximum-likelihood fit (fit(method='focei'|'foce'|'laplace')), got one by {init.info.get('method', init.info.get('sampler'))!r}")
    if sampler not in SAMPLERS:
        raise OptionError(f"`sampler` must be one of {list(SAMPLERS)}, got {sampler!r}")
    for name, v in (("draws", draws), ("tune", tune), ("chains", chains)):
        if int(v) != v or v < (1 if name != "tune" else 0):
            raise OptionError(f"`{name}` must be a positive integer, got {v!r}")
    if sampler in _JAX_SAMPLERS:
        _require_package(sampler)
    options = options or DEFAULT_SOLVER_OPTIONS["fit"]
    subjects = _subject_data(data, model, covariates)
    t0 = time.perf_counter()
    pmodel = build_pymc_model(model, subjects, options=options)
    initvals = None if init is None else initial_values(pmodel, init, subjects)
    names = estimated_parameters(model)
    omegas = [f"omega_{p.name}" for p in model.parameters if p.name in names and p.iiv is not None and p.iiv.omega > 0]
    sigmas = [v for v in pmodel.named_vars if v.startswith("sigma_")]
    var_names = names + omegas + sigmas
    info = {
        "il2pkpd_version": __version__, "model": model.name, "model_hash": model_hash(model), "data_hash": data_hash(subjects),
        "n_subjects": len(subjects), "seed": seed, "sampler": sampler,
        "solver": {"solver": options.solver, "rtol": options.rtol, "atol": options.atol},
    }
    if sampler != "map":  # a MAP fit records only what it used
        info.update(draws=draws, tune=tune, chains=chains)
    if sampler == "map":
        from .pymc_model import fit_map

        est, optimizer = fit_map(model, subjects, options=options, seed=seed)
        info["optimizer"] = optimizer
        info["wall_time_s"] = time.perf_counter() - t0
        if not optimizer["converged"]:
            warnings.warn(f"MAP did not converge: {optimizer['message']} after {optimizer['iterations']} iterations "
                          f"({optimizer['evaluations']} evaluations), largest gradient component {optimizer['gradient_norm']:.3g} "
                          f"(converged means < {MAP_GRADIENT_TOL:g}); the estimates are where the optimiser stopped, not a mode. "
                          "Check the priors' scales and starting values (the model file's values)", Il2pkpdWarning, stacklevel=2)
        import pandas as pd

        summary = pd.DataFrame({"map": {k: float(est[k]) for k in var_names}})
        return Fit(model.name, summary, info, {k: est[k] for k in est}, None)
    with pmodel:
        if sampler == "nutpie":
            idata = pm.sample(draws=draws, tune=tune, chains=chains, nuts_sampler="nutpie", random_seed=seed, progressbar=progressbar,
                              backend="jax", compile_kwargs={"gradient_backend": "jax"}, initvals=initvals)
        elif sampler in _JAX_SAMPLERS:
            idata = pm.sample(draws=draws, tune=tune, chains=chains, nuts_sampler=sampler, random_seed=seed, progressbar=progressbar,
                              nuts={"chain_method": "vectorized"}, initvals=initvals)
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
    import xarray as xr

    idata = xr.DataTree.from_dict(groups)
    info["wall_time_s"] = time.perf_counter() - t0
    summary = az.summary(idata, var_names=var_names)
    _warn_convergence(idata, summary)
    estimates = {k: float(summary.loc[k, "mean"]) for k in var_names}
    info["divergences"] = int(np.asarray(idata["sample_stats"]["diverging"].values).sum()) if "sample_stats" in idata.children else 0
    return Fit(model.name, summary, info, estimates, idata)


def initial_values(pmodel, init: Fit, subjects: SubjectData) -> dict[str, object]:
    """NUTS starting values (the PyMC model's free variables, natural scale) from a
    maximum-likelihood fit: its estimates by name and ``z_<name> = eta / omega`` from its
    conditional modes, matched to the subjects by ID.

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
    missing = sorted(free - set(out))
    if missing:
        raise OptionError(f"`init` has no value for {missing}: fit the same model by maximum likelihood first")
    return out


def _fit_by_marginal_likelihood(model, subjects: SubjectData, method: str, options, progress: bool, sir_samples: int, seed: int) -> Fit:
    """``fit(method="focei" | "foce" | "laplace")``: :func:`.estimation.estimate` as a :class:`Fit`."""
    from .. import __version__
    from .estimation import estimate, sir

    est = estimate(model, subjects, method=method, options=options, progress=progress)
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
            return (f"sigma_{obs}" if len(per_observation[obs]) == 1 else f"sigma_{obs}_{key}"), np.asarray
        return name, np.asarray

    estimates = {}
    for name, value in est.estimates.items():
        new, transform = fit_name(name)
        estimates[new] = float(transform(value))
    info = {"il2pkpd_version": __version__, "model": model.name, "model_hash": model_hash(model), "data_hash": data_hash(subjects),
            "n_subjects": len(subjects), "method": method, "ofv": est.ofv, **{k: v for k, v in est.info.items() if k != "covariance_step"},
            "covariance_step": {k: v for k, v in est.info.get("covariance_step", {}).items() if not k.endswith("_u")},
            "ebe": {"names": est.iiv_names, "subjects": [str(r.subject) for r in subjects.records], "eta": est.eta.tolist()},
            "obj_per_subject": est.obj.tolist()}
    idata = None
    if sir_samples:
        import xarray as xr

        if est.covariance is None:
            warnings.warn(f"no SIR: it samples from the covariance step's matrix, and the step failed "
                          f"({info['covariance_step'].get('reason')}); the fit has the estimate only", Il2pkpdWarning, stacklevel=3)
            return Fit(model.name, est.table, {**info, "sir": {"ok": False, "reason": "covariance step failed"}}, estimates, None)
        res = sir(est, n_samples=sir_samples, n_resamples=max(2, sir_samples // 5), seed=seed)
        info["sir"] = {k: v for k, v in res.items() if k != "draws"}
        data_vars = {}
        for name, values in res["draws"].items():
            new, transform = fit_name(name)
            data_vars[new] = (("chain", "draw"), transform(values)[None, :])
        label = f"SIR resamples (Dosne et al. 2016) of the {method} estimate: parameter uncertainty, not a Bayesian posterior"
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


def _warn_convergence(idata, summary) -> None:
    div = int(np.asarray(idata["sample_stats"]["diverging"].values).sum()) if "sample_stats" in idata.children else 0
    total = int(np.prod(np.asarray(idata["posterior"][next(iter(idata["posterior"].data_vars))].values).shape[:2]))
    if div:
        warnings.warn(f"{div} divergent transitions out of {total} draws ({100 * div / total:.1f}%): the posterior may be biased; "
                      "reparameterise or raise target_accept", Il2pkpdWarning, stacklevel=3)
    rhat = summary["r_hat"].astype(float)
    if (rhat > 1.01).any():
        worst = rhat.idxmax()
        warnings.warn(f"R-hat above 1.01 for {list(rhat[rhat > 1.01].index)} (worst {worst}: {rhat[worst]:.3f}); run longer chains",
                      Il2pkpdWarning, stacklevel=3)
    ess = summary["ess_bulk"].astype(float)
    if (ess < 400).any():
        worst = ess.idxmin()
        warnings.warn(f"bulk ESS below 400 for {list(ess[ess < 400].index)} (lowest {worst}: {ess[worst]:.0f}); run more draws",
                      Il2pkpdWarning, stacklevel=3)
