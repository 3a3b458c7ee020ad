"""Maximum-likelihood estimation of population parameters by FOCE, FOCE-I or Laplace, with
NONMEM's objective function value and covariance step.

:func:`estimate` minimises the OFV of :class:`~il2pkpd.likelihood.MarginalLikelihood` over
the typical values of the estimated (not ``fixed``) parameters, the variances of the random
effects (diagonal Omega, as the model file declares them) and the residual error parameters.
The optimiser (SciPy's L-BFGS-B) works on an unconstrained vector: typical values through
the model file's bounds (``log(x - lower)``, a scaled logit between two bounds, the identity
without), variances and error SDs on the log scale. The gradient is exact (implicit
differentiation through the conditional modes; no finite differences).

The covariance step follows NONMEM's default ``MATRIX=RSR``: ``R`` is the Hessian of
``OFV/2`` (central differences of the exact gradient; labelled so), ``S`` the sum over
subjects of the outer products of their ``OBJ_i/2`` gradients, and the covariance
``R^-1 S R^-1``; standard errors are reported on the natural scale (delta method). A
covariance step that fails (``R`` not positive definite) is said so, with its smallest
eigenvalue, and no standard errors are reported.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from ..errors import Il2pkpdWarning, OptionError
from ..likelihood import METHODS, MarginalLikelihood, default_error_params
from ..solver_options import SolverOptions
from .priors import from_unconstrained, to_unconstrained

__all__ = ["Estimate", "estimate", "sir"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class Estimate:
    """The result of :func:`estimate`.

    Attributes
    ----------
    method
        ``"foce"``, ``"focei"`` or ``"laplace"``.
    ofv
        NONMEM's objective function value at the estimate (-2 log-likelihood without the
        constant ``n log 2 pi``, ``n`` the uncensored observations).
    estimates
        Natural-scale values: typical values under the parameters' names, ``omega2_<name>``
        (variances of the random effects), ``<observation>_<add|prop|sigma>`` (residual SDs).
    table
        One row per estimated quantity: ``estimate``, ``se``, ``rse_percent``, ``ci_low``,
        ``ci_high`` (Wald 95%), ``kind`` (THETA, OMEGA, SIGMA).
    covariance
        Natural-scale covariance (``R^-1 S R^-1``), ``None`` where the covariance step failed.
    covariance_r
        ``2 (Hessian of OFV)^-1`` (NONMEM's ``MATRIX=R``), ``None`` where it failed.
    eta
        (B, K) conditional modes (empirical Bayes estimates), columns ``iiv_names``.
    obj
        (B,) each subject's OBJ_i.
    info
        Provenance and diagnostics: iterations, evaluations, wall time, convergence message,
        condition number of the correlation matrix, eta-shrinkage, AIC, BIC, solver settings,
        and ``residuals``: ID, TIME, DVID, DV, PRED, IPRED, IWRES, CWRES of every uncensored
        observation (columns).
    """

    method: str
    ofv: float
    estimates: dict
    table: object
    covariance: np.ndarray | None
    covariance_r: np.ndarray | None
    eta: np.ndarray
    iiv_names: list
    obj: np.ndarray
    info: dict = field(default_factory=dict)
    _scale: object = field(default=None, repr=False)


@dataclass
class _Layout:
    """Where each estimated quantity sits in the unconstrained vector ``u``."""

    theta_index: list  # model parameter index of each estimated typical value
    theta_bounds: list  # {"dist": "uniform", "lower", "upper"} supports for the transforms
    error_keys: list  # (observation, key)
    names: list  # natural-scale names, in u order
    kinds: list  # THETA / OMEGA / SIGMA


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Unpack:
    """``unpack(u) -> (theta (P,), omega (K, K), error)``: the estimation vector on the model's
    scales. A JAX pytree whose values (the fixed typical values, the held residual parameters)
    are leaves, so compiled objectives take them as arguments: a fit of the same model with
    other fixed values (each point of a likelihood profile) runs the same program, and the
    persistent compilation cache serves it instead of XLA compiling it again."""

    base_theta: jax.Array  # (P,) every typical value; the estimated ones are overwritten
    held: dict  # observation -> {key: value}: residual parameters held at the model file's
    theta_index: tuple = field(metadata={"static": True})
    theta_bounds: tuple = field(metadata={"static": True})  # (lower, upper) per estimated typical value
    n_k: int = field(metadata={"static": True})
    error_keys: tuple = field(metadata={"static": True})  # (observation, key) estimated
    observations: tuple = field(metadata={"static": True})  # observations with estimated residual parameters

    def __call__(self, u):
        n_theta = len(self.theta_index)
        nat = [from_unconstrained({"dist": "uniform", "lower": lo, "upper": hi}, u[i])[0] for i, (lo, hi) in enumerate(self.theta_bounds)]
        theta = self.base_theta.at[jnp.asarray(self.theta_index, dtype=int)].set(jnp.stack(nat)) if nat else self.base_theta
        omega = jnp.diag(jnp.exp(u[n_theta:n_theta + self.n_k]))
        err = {o: dict(p) for o, p in self.held.items()} | {o: {} for o in self.observations}
        for i, (o, k) in enumerate(self.error_keys):
            err[o][k] = jnp.exp(u[n_theta + self.n_k + i])
        return theta, omega, err


def _observed_error_params(model, ml: MarginalLikelihood, error0: dict) -> tuple[dict, dict]:
    """The residual error parameters the data inform (observations with at least one row)
    and those held at the model file's values (no rows: estimating them is a flat direction
    of the objective, and the covariance step would fail on it), with the reason."""
    joint = ml.joint
    held = {}
    for k, spec in enumerate(model.observations):
        if not np.any((joint._kind == 1) & (joint._obs_k == k)):
            held[spec.name] = error0[spec.name]
    return {o: p for o, p in error0.items() if o not in held}, held


def _layout(model, ml: MarginalLikelihood, error0: dict) -> _Layout:
    index, bounds, names, kinds = [], [], [], []
    for j, p in enumerate(model.parameters):
        if p.fixed:
            continue
        lo = -math.inf if p.lower is None else float(p.lower)
        hi = math.inf if p.upper is None else float(p.upper)
        index.append(j)
        bounds.append({"dist": "uniform", "lower": lo, "upper": hi})
        names.append(p.name)
        kinds.append("THETA")
    names += [f"omega2_{n}" for n in ml.iiv_names]
    kinds += ["OMEGA"] * len(ml.iiv_names)
    keys = [(o, k) for o, params in error0.items() for k in params]
    names += [f"{o}_{k}" for o, k in keys]
    kinds += ["SIGMA"] * len(keys)
    return _Layout(index, bounds, keys, names, kinds)


#: iterations over which the ``ofv_tol`` stopping rule looks back
STOP_WINDOW = 5
#: a move on the estimation scale (log scale for positive parameters) the ``ofv_tol`` rule
#: reports as a parameter still moving: about three significant digits
PARAMETER_TOL = 1e-3
#: a move over the stopping rule's window, in standard errors, that is warned of: the
#: objective is flat but the estimate is still moving by a part of its own uncertainty
DRIFT_SE = 0.1
#: largest expected decrease to the minimum (OFV units, :func:`_expected_decrease`) at which
#: a run that stopped is called converged: well below the 3.84 of a likelihood-ratio test
EDM_LIMIT = 0.1


def _cross_product_curvature(subject_gradients: np.ndarray) -> np.ndarray:
    """The cross-product (BHHH) estimate ``H = 1/2 sum_i g_i g_i^T`` of the OFV's Hessian from
    each subject's OFV gradient ``g_i`` (the OFV is -2 log L, and the information is the
    expected outer product of the score; exact in expectation at the true parameters)."""
    g = np.asarray(subject_gradients, dtype=float)
    return 0.5 * g.T @ g


def _scaling(subject_gradients: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """A diagonal change of variables ``u = u0 + T z`` that gives every estimated quantity
    about unit curvature in ``z`` at the start: ``T = diag(H_jj)^-1/2`` with ``H`` from
    :func:`_cross_product_curvature`, each ``H_jj`` at least ``floor`` times the largest.

    This is the scaling NONMEM and nlmixr2 apply before their quasi-Newton search, with the
    scale read off the data rather than set to a constant. A full-matrix version (``H^-1/2``)
    was tried and took 2-4x more iterations on theophylline: far from the optimum the outer
    product is dominated by the mean gradient and says little about the other directions.
    """
    d = np.diag(_cross_product_curvature(subject_gradients))
    if not np.all(np.isfinite(d)) or d.max() <= 0:
        return np.eye(len(d))
    return np.diag(1.0 / np.sqrt(np.maximum(d, floor * d.max())))


def _expected_decrease(gradient: np.ndarray, subject_gradients: np.ndarray) -> float:
    """Estimated distance to the minimum in OFV units, ``EDM = 1/2 g^T H^+ g`` (MINUIT's EDM)
    with the cross-product curvature ``H``: how much lower the OFV would go if the quadratic
    model held. Scale free, unlike a gradient norm."""
    h = _cross_product_curvature(subject_gradients)
    g = np.asarray(gradient, dtype=float)
    return float(0.5 * g @ np.linalg.pinv(h, rcond=1e-10, hermitian=True) @ g)


def estimate(model, data, method: str = "focei", *, options: SolverOptions | None = None, start: dict | None = None,
             eta_tol: float = 1e-10, max_iter: int = 500, covariance: bool = True, progress: bool | Callable = False,
             priors: bool = False, restarts: int = 0, perturbation: float = 0.2, seed: int = 0, ofv_tol: float | None = None,
             precondition: bool = True) -> Estimate:
    """Estimate population parameters by maximum likelihood (FOCE, FOCE-I or Laplace).

    Parameters
    ----------
    model
        The model: estimated typical values are the parameters not ``fixed``; each ``iiv``
        adds a random effect whose variance is estimated (started at ``omega^2``).
    data
        :class:`~il2pkpd.likelihood.SubjectData` or records per subject.
    method
        A key of :data:`~il2pkpd.likelihood.METHODS`.
    options
        Solver settings (Rodas4; default ``DEFAULT_SOLVER_OPTIONS["estimate"]``).
    start
        Starting values replacing the model file's, by the names of ``Estimate.estimates``.
    eta_tol
        Newton-decrement tolerance of the conditional modes.
    max_iter
        Most outer (L-BFGS-B) iterations.
    ofv_tol
        A stopping rule on the objective: stop once it has fallen by less than this over the
        last :data:`STOP_WINDOW` iterations (e.g. 1e-3). The message names the parameters that
        still moved by :data:`PARAMETER_TOL` or more on the estimation scale (not settled to 3
        significant digits, NONMEM's SIGDIGITS), and a warning those that moved by more than
        :data:`DRIFT_SE` standard errors (a flat ridge). Default ``None``: L-BFGS-B's own test
        (gradient 1e-6), which can run long on a ridge.
    precondition
        Run L-BFGS-B in variables scaled by the start's cross-product curvature
        (:func:`_scaling`); ``False`` runs it on the estimation scale as it is.
    covariance
        Run the covariance step.
    progress
        ``True`` prints one line per iteration (iteration, OFV, gradient norm); a callable
        receives ``(iteration, ofv, grad_norm)``.
    priors
        MAP-FOCE-I (NONMEM's ``$PRIOR`` analogue): minimise ``OFV - 2 log p(parameters)`` with
        the model file's priors on typical values (a parameter without one has a flat
        prior, listed in ``info["flat_prior"]``), :data:`~.priors.OMEGA_PRIOR` on each IIV SD
        and :func:`~.priors.sigma_prior` on each residual parameter: the densities of the
        NUTS fit, on the scale the model file writes them (omega as an SD). ``Estimate.ofv``
        stays the OFV; ``info["objective"]`` is the penalised value. The covariance is then
        ``R^-1`` (the posterior's curvature; a sandwich has no meaning with a prior).
    restarts
        Estimate again from this many perturbed starts (each starting value times
        ``1 + U(-perturbation, perturbation)``, as PsN's ``-retries``; seeded by ``seed``) and
        keep the lowest objective; every run's OFV is in ``info["restarts"]``.
    """
    if method not in METHODS:
        raise OptionError(f"`method` must be one of {sorted(METHODS)}, got {method!r}")
    t_start = time.perf_counter()
    if int(restarts) != restarts or restarts < 0:
        raise OptionError(f"`restarts` must be an integer >= 0, got {restarts!r}")
    if not (isinstance(perturbation, (int, float)) and 0 < perturbation < 1):
        raise OptionError(f"`perturbation` must be a number in (0, 1), got {perturbation!r}")
    ml = MarginalLikelihood(model, data, method=method, options=options)
    error_file = default_error_params(model)
    error0, held = _observed_error_params(model, ml, error_file)
    lay = _layout(model, ml, error0)
    if not lay.names:
        raise OptionError(f"model {model.name!r} has nothing to estimate: every parameter is fixed and there is no IIV or error model")
    values0 = {**{p.name: p.value for p in model.parameters}, **{f"omega2_{p.name}": p.iiv.omega**2 for p in model.parameters if p.iiv is not None},
               **{f"{o}_{k}": v for o, params in error0.items() for k, v in params.items()}}
    for key, val in (start or {}).items():
        if key not in lay.names:
            raise OptionError(f"`start` key {key!r} is not an estimated quantity; estimated: {lay.names}")
        if not (isinstance(val, (int, float)) and math.isfinite(val)):
            raise OptionError(f"`start[{key!r}]` must be a finite number, got {val!r}")
        values0[key] = float(val)
    for i, name in enumerate(lay.names):
        val = values0[name]
        if i < len(lay.theta_index):
            lo, hi = lay.theta_bounds[i]["lower"], lay.theta_bounds[i]["upper"]
            if not lo < val < hi:
                raise OptionError(f"the starting value of {name} must be inside its bounds ({lo:g}, {hi:g}), got {val!r}: set start[{name!r}]")
        elif not val > 0:
            what = "variance" if name.startswith("omega2_") else "residual error parameter"
            raise OptionError(f"the starting {what} {name} must be > 0, got {val!r} (from the model file): set start[{name!r}]")
    n_theta, n_k = len(lay.theta_index), len(ml.iiv_names)
    unpack = _Unpack(jnp.asarray([p.value for p in model.parameters], dtype=float),
                     {o: {k: jnp.asarray(float(v)) for k, v in p.items()} for o, p in held.items()},
                     tuple(lay.theta_index), tuple((b["lower"], b["upper"]) for b in lay.theta_bounds), n_k,
                     tuple(lay.error_keys), tuple(error0))

    def natural(u) -> np.ndarray:
        return np.asarray(_natural_variances_jax(unpack, lay, jnp.asarray(u, dtype=float)))

    def log_jacobian(u) -> float:
        """log |d natural / d u|: the typical values' transforms, then exp for the rest."""
        u = np.asarray(u, dtype=float)
        return float(sum(float(from_unconstrained(b, u[i])[1]) for i, b in enumerate(lay.theta_bounds)) + np.sum(u[n_theta:]))

    def to_u(values: dict) -> np.ndarray:
        return np.concatenate([[float(to_unconstrained(b, values[lay.names[i]])) for i, b in enumerate(lay.theta_bounds)],
                               [math.log(values[n]) for n in lay.names[n_theta:]]])

    u0 = to_u(values0)
    penalty, info_prior = _prior_penalty(model, lay, natural_jax=lambda u: _natural_jax(unpack, lay, u), error_file=error_file) if priors else (None, {})
    if ofv_tol is not None and not (isinstance(ofv_tol, (int, float)) and math.isfinite(ofv_tol) and ofv_tol > 0):
        raise OptionError(f"`ofv_tol` must be a positive number (an OFV change, e.g. 1e-3), got {ofv_tol!r}")
    state = {"eta": None, "evals": 0, "iter": 0, "last": None, "unconverged": 0}

    def modes_at(u):
        return ml.modes(*_numpy_population(unpack(jnp.asarray(u))), eta0=state["eta"], tol=eta_tol)

    def objective_and_subject_gradients(u, eta):
        """The objective (OFV, plus the prior's -2 log density with ``priors``), its gradient,
        and each subject's OBJ_i and gradient."""
        obj, jac = ml.objective_and_gradient(unpack, u, eta)
        total, g = float(np.sum(obj)), jac.sum(axis=0)
        if penalty is not None:
            pv, pg = penalty(jnp.asarray(u, dtype=float))
            total, g = total + float(pv), g + np.asarray(pg)
        return total, g, obj, jac

    def fun(u):
        state["evals"] += 1
        modes = modes_at(u)
        if not np.isfinite(modes.ofv):
            # L-BFGS-B's line search needs a finite value: a failed solve or a singular H
            # is made worse than the last point, so the search steps back
            last = state["last"]
            return (last[0] + 1e6, -last[1]) if last is not None else (np.inf, np.zeros_like(u))
        state["eta"] = modes.eta
        # the gradient assumes d l / d eta = 0 at the modes: counted where it does not hold
        state["unconverged"] += int(not modes.converged.all())
        total, g, _, jac = objective_and_subject_gradients(u, modes.eta)
        state["last"] = (total, g, jac)
        return total, g

    def callback(intermediate):
        state["iter"] += 1
        ofv, g, _ = state["last"]
        if ofv_tol is not None:
            # the OFV has stopped moving: the parameters not settled to NONMEM's 3 significant
            # digits are named in the message; a move that is a sizeable part of a standard
            # error (a ridge) is warned of after the run
            hist = state["history"]
            z = np.array(intermediate.x if hasattr(intermediate, "x") else intermediate, dtype=float)
            hist.append((ofv, state["to_u"](z)))
            if len(hist) > STOP_WINDOW:
                old_ofv, old_u = hist[-STOP_WINDOW - 1]
                moved = np.abs(hist[-1][1] - old_u)
                if old_ofv - ofv < ofv_tol:
                    # how far each moved in standard errors (cross-product curvature here)
                    se = np.sqrt(np.abs(np.diag(np.linalg.pinv(_cross_product_curvature(state["last"][2]), rcond=1e-10, hermitian=True))))
                    in_se = moved / np.where(se > 0, se, np.inf)
                    unsettled = [n for n, m in zip(lay.names, moved) if m >= PARAMETER_TOL]
                    state["stopped"] = (f"stopping rule: the objective fell by {old_ofv - ofv:.2g} (< {ofv_tol:g}) over the last {STOP_WINDOW} "
                                        "iterations; " + (f"{unsettled} had not settled to 3 significant digits (moved by up to "
                                                          f"{moved.max():.2g} on the estimation scale, {in_se.max():.2g} standard errors)"
                                                          if unsettled else "every parameter settled to 3 significant digits"))
                    state["drifting"] = [n for n, m in zip(lay.names, in_se) if m > DRIFT_SE]
                    raise StopIteration
        if callable(progress):
            progress(state["iter"], ofv, float(np.max(np.abs(g))))
        elif progress:
            print(f"iteration {state['iter']:4d}  {'objective' if priors else 'OFV'} {ofv:.6f}  |gradient| {np.max(np.abs(g)):.3g}", flush=True)

    def optimise(u_start, label: str):
        state.update(eta=None, last=None, history=[], stopped=None, drifting=[])
        first = fun(u_start)
        if not np.isfinite(first[0]):
            raise OptionError(f"the {method} objective is not finite at the {label} {dict(zip(lay.names, natural(u_start)))}: "
                              "a solve failed or a subject's conditional Hessian is singular; give other `start` values")
        # L-BFGS-B on z, u = u_start + T z, with T from the start's curvature (see _scaling):
        # the first quasi-Newton steps are then near Newton steps, not gradient steps
        t = _scaling(state["last"][2]) if precondition else np.eye(len(u_start))
        state["to_u"] = lambda z: u_start + t @ z

        def fun_z(z):
            val, g = fun(state["to_u"](z))
            return val, t.T @ g

        res = scipy.optimize.minimize(fun_z, np.zeros(len(u_start)), jac=True, method="L-BFGS-B", callback=callback,
                                      options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-6})
        res.x = state["to_u"](res.x)
        res.drifting = state["drifting"]
        if state["stopped"]:
            res.success, res.message = True, state["stopped"]
        return res

    res = optimise(u0, "starting values")
    best_eta = state["eta"]  # the modes where the best run ended: the final solve starts there
    runs = [{"start": dict(zip(lay.names, natural(u0).tolist())), "objective": float(res.fun), "converged": bool(res.success)}]
    rng = np.random.default_rng(seed)
    for r in range(int(restarts)):
        values = dict(values0)
        for i, name in enumerate(lay.names):
            trial = values0[name] * (1.0 + rng.uniform(-perturbation, perturbation))
            inside = lay.theta_bounds[i]["lower"] < trial < lay.theta_bounds[i]["upper"] if i < n_theta else trial > 0
            values[name] = trial if inside else values0[name]
        if progress is True:
            print(f"restart {r + 1} of {restarts}", flush=True)
        try:
            other = optimise(to_u(values), f"restart {r + 1}'s perturbed start")
        except OptionError as exc:
            runs.append({"start": values, "objective": math.inf, "converged": False, "error": str(exc)})
            continue
        runs.append({"start": values, "objective": float(other.fun), "converged": bool(other.success)})
        if other.fun < res.fun:
            res, best_eta = other, state["eta"]
    state["eta"] = best_eta
    u_hat = res.x
    modes = modes_at(u_hat)
    objective, g_hat, obj, jac = objective_and_subject_gradients(u_hat, modes.eta)
    ofv = float(np.sum(obj))
    nat = natural(u_hat)
    edm = _expected_decrease(g_hat, jac)
    if res.success and not edm <= EDM_LIMIT:
        # L-BFGS-B also stops when its line search can make no progress (a non-finite
        # objective stepped back from, round-off): that is not a minimum
        res.success = False
        res.message = f"{res.message}; but the expected decrease to the minimum (EDM) is {edm:.3g} OFV units (> {EDM_LIMIT:g}): not at a minimum"
    info = {"method": method, "description": METHODS[method].description, "converged": bool(res.success), "message": str(res.message),
            "iterations": int(res.nit), "evaluations": state["evals"], "gradient_max": float(np.max(np.abs(g_hat))), "edm": edm,
            "modes_converged": bool(modes.converged.all()), "evaluations_with_unconverged_modes": state["unconverged"],
            "solver": vars(ml.options).copy(), "objective": objective, "preconditioned": bool(precondition), "priors": bool(priors), **info_prior,
            "not_estimated": {f"{o}_{k}": {"value": v, "reason": "no observation rows of this type in the data: held at the model file's value"}
                              for o, p in held.items() for k, v in p.items()}}
    if restarts:
        info["restarts"] = runs
        best = min(r["objective"] for r in runs)
        if runs[0]["objective"] - best > 0.1:
            warnings.warn(f"{method}: a perturbed start reached an objective {runs[0]['objective'] - best:.3g} lower than the first run "
                          f"({best:.4f} against {runs[0]['objective']:.4f}): the first run stopped in a local minimum; the estimate is the lowest",
                          Il2pkpdWarning, stacklevel=2)
    if not modes.converged.all():
        bad = [str(ml.joint.subjects[i].subject) for i in np.flatnonzero(~modes.converged)]
        warnings.warn(f"{method}: the conditional modes of subjects {bad[:10]} did not converge at the estimate (Newton decrement "
                      f"above {eta_tol:g}): their OBJ, the gradient and the covariance step are approximate there", Il2pkpdWarning, stacklevel=2)
    if res.drifting:
        warnings.warn(f"{method}: the stopping rule found the objective flat while {res.drifting} still moved by more than "
                      f"{DRIFT_SE:g} standard errors over {STOP_WINDOW} iterations: a flat ridge of the objective; their estimates "
                      "are where the search stopped on it (see the covariance step's condition number)", Il2pkpdWarning, stacklevel=2)
    if not res.success:
        warnings.warn(f"{method} estimation did not converge: {res.message} (OFV {ofv:.4f}, max |gradient| {info['gradient_max']:.3g})",
                      Il2pkpdWarning, stacklevel=2)
    cov, cov_r, cov_u = None, None, None
    if covariance:
        def gradient_at(u):
            return objective_and_subject_gradients(u, modes_at(u).eta)[1]

        cov, cov_r, cov_u, info["covariance_step"] = _covariance_step(gradient_at, u_hat, jac, natural, sandwich=not priors)
        if n_k and info["covariance_step"]["ok"]:
            # d eta_hat_i / d estimate (natural scale, table order): with the covariance, the
            # random effects' covariance with the estimates (what a NUTS mass matrix needs)
            sens_u = ml.mode_sensitivity(unpack, u_hat, modes.eta)
            dnat_du = np.diag(np.asarray(jax.jacfwd(lambda v: _natural_variances_jax(unpack, lay, v))(jnp.asarray(u_hat, dtype=float))))
            info["eta_sensitivity"] = (sens_u / dnat_du).tolist()
    n_obs = int(np.sum(ml.n_gaussian))
    n_par = len(lay.names)
    info["aic"] = ofv + n_obs * _LOG_2PI + 2 * n_par
    info["bic"] = ofv + n_obs * _LOG_2PI + n_par * math.log(max(n_obs, 1))
    omega_hat = nat[n_theta:n_theta + n_k]
    info["eta_shrinkage_percent"] = {n: float(100 * (1 - np.std(modes.eta[:, k], ddof=1) / math.sqrt(omega_hat[k])))
                                     for k, n in enumerate(ml.iiv_names)} if len(modes.eta) > 1 else {}
    # H_i^-1 at each mode: the conditional covariance of eta_i (what a NUTS mass matrix needs)
    info["eta_conditional_cov"] = np.linalg.inv(np.asarray(modes.hessian, dtype=float)).tolist()
    info["wall_time_s"] = time.perf_counter() - t_start
    info["residuals"] = _residual_table(ml, unpack(jnp.asarray(u_hat)), modes.eta)
    info["eps_shrinkage_percent"] = _eps_shrinkage(model, info["residuals"])
    at_bound = _at_bound(lay, nat, [values0[n] for n in lay.names])
    info["near_boundary"] = [n for n, b in zip(lay.names, at_bound) if b]
    if info["near_boundary"]:
        warnings.warn(f"{method}: {info['near_boundary']} ended at (or next to) a bound of the model file, or a variance near 0 "
                      "(NONMEM's PARAMETER ESTIMATE IS NEAR ITS BOUNDARY): the likelihood would go past it; their standard errors "
                      "and Wald intervals describe nothing there (the table's `near_boundary` column)", Il2pkpdWarning, stacklevel=2)

    def objective_at(u) -> float:
        m = ml.modes(*_numpy_population(unpack(jnp.asarray(u))), eta0=modes.eta, tol=eta_tol)
        return m.ofv + (float(penalty(jnp.asarray(u, dtype=float))[0]) if penalty is not None else 0.0)

    return Estimate(method=method, ofv=ofv, estimates=dict(zip(lay.names, nat.tolist())), table=_table(lay, nat, cov, at_bound),
                    covariance=cov, covariance_r=cov_r, eta=modes.eta, iiv_names=list(ml.iiv_names), obj=obj, info=info,
                    _scale=_EstimationScale(u_hat, cov_u, objective, objective_at, natural, log_jacobian, list(lay.names)))


def _natural_variances_jax(unpack, lay: _Layout, u):
    """The estimates as the table gives them (``omega2`` as variances), in ``lay.names`` order (JAX)."""
    theta, omega, err = unpack(u)
    return jnp.concatenate([theta[jnp.asarray(lay.theta_index, dtype=int)], jnp.diag(omega),
                            jnp.stack([err[o][k] for o, k in lay.error_keys]) if lay.error_keys else jnp.zeros(0)])


def _natural_jax(unpack, lay: _Layout, u):
    """The estimated quantities on the model file's scale, in ``lay.names`` order (JAX):
    typical values, omega SDs (not variances: the priors are on SDs), residual parameters."""
    values = _natural_variances_jax(unpack, lay, u)
    n_theta, n_k = len(lay.theta_index), len(lay.names) - len(lay.theta_index) - len(lay.error_keys)
    return values.at[n_theta:n_theta + n_k].set(jnp.sqrt(values[n_theta:n_theta + n_k]))


def _prior_penalty(model, lay: _Layout, natural_jax, error_file: dict):
    """``u -> (-2 log p(parameters), its gradient)`` for MAP-FOCE-I, and what it used."""
    from .priors import OMEGA_PRIOR, prior_logpdf, sigma_prior

    by_name = {p.name: p for p in model.parameters}
    priors, flat = [], []
    for i, (name, kind) in enumerate(zip(lay.names, lay.kinds)):
        if kind == "THETA":
            prior = by_name[name].prior
            if prior is None:
                flat.append(name)
                continue
        elif kind == "OMEGA":
            prior = OMEGA_PRIOR
        else:
            obs, key = name.rsplit("_", 1)
            prior = sigma_prior(error_file[obs][key])
        priors.append((i, prior))

    def value(u):
        x = natural_jax(u)
        return -2.0 * sum(prior_logpdf(prior, x[i]) for i, prior in priors) if priors else 0.0 * u[0]

    fn = jax.jit(jax.value_and_grad(value))
    return fn, {"flat_prior": flat, "prior_scale": "typical values, omega SDs and residual parameters as the model file writes them"}


def _eps_shrinkage(model, residuals: dict) -> dict[str, float]:
    """epsilon-shrinkage per observation type, ``100 (1 - SD(IWRES))`` (NONMEM's EPSSHRINK)."""
    iwres = np.asarray(residuals["IWRES"], dtype=float)
    dvid = np.asarray(residuals["DVID"])
    out = {}
    for spec in model.observations:
        x = iwres[dvid == spec.dvid]
        if x.size > 1:
            out[spec.name] = float(100 * (1 - np.std(x, ddof=1)))
    return out


def _residual_table(ml: MarginalLikelihood, population, eta) -> dict[str, list]:
    """PRED, IPRED, IWRES and CWRES (:meth:`MarginalLikelihood.residuals`) of every uncensored
    observation, as columns (ID, TIME, DVID, DV, ...) in subject then time order."""
    theta, omega, err = _numpy_population(population)
    res = ml.residuals(theta, omega, err, eta)
    obs = ml.joint.observations()
    i, j = obs["subject"], obs["slot"]
    keep = ~np.isnan(res["CWRES"][i, j])
    ids = [str(ml.joint.subjects[k].subject) for k in i[keep]]
    dvid = [ml.model.observations[k].dvid for k in obs["observation"][keep]]
    table = {"ID": ids, "TIME": obs["time"][keep].tolist(), "DVID": dvid, "DV": obs["dv"][keep].tolist()}
    table.update({name: values[i, j][keep].tolist() for name, values in res.items()})
    return table


def _numpy_population(population):
    theta, omega, err = population
    return np.asarray(theta), np.asarray(omega), {o: {k: float(v) for k, v in p.items()} for o, p in err.items()}


@dataclass(frozen=True)
class _EstimationScale:
    """What SIR needs from an estimate: the unconstrained optimum and covariance, the
    objective there and a function giving it elsewhere (modes solved again; the OFV, plus the
    prior's term for MAP-FOCE-I) and the map to natural values."""

    u_hat: np.ndarray
    cov_u: np.ndarray | None
    objective_hat: float
    objective: Callable
    natural: Callable
    log_jacobian: Callable
    names: list


def sir(est: Estimate, n_samples: int = 1000, n_resamples: int = 200, seed: int = 0, proposal: str = "r", inflation: float = 1.0,
        progress: bool | Callable = False, iterations: int = 1) -> dict:
    """Parameter uncertainty by sampling importance resampling (Dosne et al. 2016).

    ``n_samples`` parameter vectors are drawn from a multivariate normal proposal centred on
    the estimate, on the estimation scale, with the covariance step's ``R^-1`` (``proposal="r"``,
    default: the curvature of the likelihood itself, which keeps the importance ratios even)
    or ``R^-1 S R^-1`` (``"rsr"``, NONMEM's default matrix, Dosne's proposal) times
    ``inflation``; each
    gets the importance ratio ``exp(-dOFV/2) |d natural / d u| / proposal density`` (the
    likelihood with a flat prior on the natural scale, as on NONMEM's), with ``dOFV`` its OFV
    (modes solved again) minus the estimate's; ``n_resamples`` are drawn without replacement in
    proportion to the ratios.

    ``iterations`` > 1 repeats this as Dosne et al. (2017) do where the first proposal fits the
    likelihood badly (few effective samples): each further iteration's proposal is the
    multivariate normal centred on the estimate with the covariance of the previous
    iteration's resamples (on the estimation scale, no inflation). ``n_samples`` and
    ``n_resamples`` may then give one value per iteration: Dosne et al. raise the resampled
    share in later iterations (PsN's default 1000/200, 1000/400, 1000/500, 2000/1000,
    2000/1000), which keeps each proposal wider than the target. The result is the last
    iteration's; every iteration's diagnostics are in ``iterations``.

    ``progress``: ``True`` prints a line every twentieth of the samples (samples done,
    elapsed seconds); a callable is called as ``progress(done, n_samples)`` after each.

    Returns
    -------
    dict
        ``draws`` (natural-scale values by name, each ``(n_resamples,)``), ``se`` and
        ``ci95`` (2.5 and 97.5 percentiles) per name, and diagnostics: ``ess`` (effective
        sample size of the ratios), ``max_weight`` (largest normalised ratio),
        ``failed_samples`` (OFV not finite: weight 0), ``dofv_resamples_q95`` against
        ``chi2_q95`` (the 95th percentile of a chi-square with as many degrees of freedom
        as parameters, which dOFV of resamples should follow when the estimate's
        uncertainty is well described), ``iterations`` (those diagnostics per iteration), and
        the settings.
    """
    import scipy.stats

    scale = est._scale
    if scale is None or scale.cov_u is None:
        raise OptionError("SIR needs the covariance step's matrix as its proposal: estimate(..., covariance=True) with a successful step")
    if proposal not in scale.cov_u:
        raise OptionError(f"`proposal` must be one of {sorted(scale.cov_u)}, got {proposal!r}")
    if not (isinstance(inflation, (int, float)) and math.isfinite(inflation) and inflation > 0):
        raise OptionError(f"`inflation` must be a finite number > 0, got {inflation!r}")
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise OptionError(f"`iterations` must be an integer >= 1, got {iterations!r}")
    per_iteration = {}
    for name, v, lo in (("n_samples", n_samples, 2), ("n_resamples", n_resamples, 1)):
        values = list(v) if isinstance(v, (list, tuple)) else [v] * int(iterations)
        if len(values) != iterations:
            raise OptionError(f"`{name}` must be one integer or one per iteration ({iterations}), got {v!r}")
        for x in values:
            if isinstance(x, bool) or int(x) != x or x < lo:
                raise OptionError(f"`{name}` must be an integer >= {lo} (or one per iteration), got {v!r}")
        per_iteration[name] = [int(x) for x in values]
    for m, r in zip(per_iteration["n_samples"], per_iteration["n_resamples"]):
        if r >= m:
            raise OptionError(f"`n_resamples` must be below `n_samples` (resampling is without replacement), got {r} >= {m}")
    rng = np.random.default_rng(seed)
    k = len(scale.names)
    chi2_q95 = float(scipy.stats.chi2.ppf(0.95, k))
    cov = inflation * scale.cov_u[proposal]
    rounds = []
    for it in range(1, int(iterations) + 1):
        m, r = per_iteration["n_samples"][it - 1], per_iteration["n_resamples"][it - 1]
        picked_u, dofv_picked, w, ok = _sir_round(scale, cov, m, r, rng, progress, f"SIR iteration {it}: " if iterations > 1 else "SIR: ")
        what = (f"multivariate normal, {'R^-1' if proposal == 'r' else 'R^-1 S R^-1'} x {inflation:g} on the estimation scale (Dosne et al. 2016)"
                if it == 1 else f"multivariate normal, the covariance of iteration {it - 1}'s resamples (Dosne et al. 2017)")
        rounds.append({"iteration": it, "n_samples": m, "n_resamples": r, "proposal": what, "ess": float(1.0 / np.sum(w**2)), "max_weight": float(w.max()),
                       "failed_samples": int(np.sum(~ok)), "dofv_resamples_q95": float(np.percentile(dofv_picked, 95))})
        cov = np.cov(picked_u, rowvar=False).reshape(k, k)  # the next iteration's proposal
    draws = np.array([scale.natural(u) for u in picked_u])
    last = rounds[-1]
    return {
        "draws": {n: draws[:, j] for j, n in enumerate(scale.names)},
        "se": {n: float(np.std(draws[:, j], ddof=1)) for j, n in enumerate(scale.names)},
        "ci95": {n: np.percentile(draws[:, j], [2.5, 97.5]).tolist() for j, n in enumerate(scale.names)},
        "ess": last["ess"], "max_weight": last["max_weight"], "failed_samples": last["failed_samples"],
        "dofv_resamples_q95": last["dofv_resamples_q95"], "chi2_q95": chi2_q95, "iterations": rounds,
        "n_samples": n_samples, "n_resamples": n_resamples, "seed": seed, "inflation": inflation, "proposal": last["proposal"],
    }


def _sir_round(scale, cov: np.ndarray, n_samples: int, n_resamples: int, rng, progress, label: str):
    """One SIR iteration: samples from N(u_hat, cov), their importance weights, and the
    resamples (without replacement). Returns the resamples (estimation scale), their dOFV,
    the normalised weights and which samples had a finite weight."""
    import scipy.stats

    proposal = scipy.stats.multivariate_normal(scale.u_hat, cov, allow_singular=False)
    samples = proposal.rvs(size=n_samples, random_state=rng).reshape(n_samples, -1)
    every = max(1, n_samples // 20)
    started = time.perf_counter()
    objectives = []
    for i, u in enumerate(samples, 1):  # one at a time: each solves every subject's modes again
        objectives.append(scale.objective(u))
        if callable(progress):
            progress(i, n_samples)
        elif progress and (i % every == 0 or i == n_samples):
            print(f"{label}{i} of {n_samples} samples, {time.perf_counter() - started:.0f} s", flush=True)
    dofv = np.array(objectives) - scale.objective_hat
    # the target is the likelihood with a flat prior on the natural scale (as NONMEM's
    # parameters): on the estimation scale that carries the Jacobian |d natural / d u|
    log_w = -0.5 * dofv + np.array([scale.log_jacobian(u) for u in samples]) - proposal.logpdf(samples)
    ok = np.isfinite(log_w)
    w = np.zeros(n_samples)
    w[ok] = np.exp(log_w[ok] - np.max(log_w[ok]))
    w /= w.sum()
    n_nonzero = int(np.count_nonzero(w))
    if n_nonzero < n_resamples:
        raise OptionError(f"SIR: only {n_nonzero} of {n_samples} samples have a finite OFV, fewer than n_resamples={n_resamples}")
    picked = rng.choice(n_samples, size=n_resamples, replace=False, p=w)
    return samples[picked], dofv[picked], w, ok


def _covariance_step(gradient_at, u_hat, jac_hat, natural, sandwich: bool = True):
    """NONMEM's MATRIX=RSR covariance on the natural scale (``R^-1`` alone without
    ``sandwich``), or why it failed. ``gradient_at(u)`` is the objective's exact gradient."""
    n = len(u_hat)
    r = np.zeros((n, n))
    for j in range(n):  # central differences of the exact gradient (the R matrix is labelled so)
        h = 1e-4 * max(1.0, abs(u_hat[j]))
        up, dn = u_hat.copy(), u_hat.copy()
        up[j] += h
        dn[j] -= h
        r[:, j] = (gradient_at(up) - gradient_at(dn)) / (2 * h) / 2.0
    if not np.all(np.isfinite(r)):
        return None, None, None, {"ok": False, "reason": "the objective's gradient is not finite next to the estimate (a failed solve or a singular conditional Hessian)"}
    r = 0.5 * (r + r.T)
    s = (jac_hat / 2.0).T @ (jac_hat / 2.0)
    eig = np.linalg.eigvalsh(r)
    if not eig[0] > 0:
        return None, None, None, {"ok": False, "reason": f"R matrix (Hessian of OFV/2) is not positive definite: smallest eigenvalue {eig[0]:.3g}",
                                  "r_eigenvalues": eig.tolist()}
    r_inv = np.linalg.inv(r)
    # delta method to the natural scale: d natural / d u, column by column
    jac_nat = np.zeros((n, n))
    for j in range(n):
        h = 1e-6 * max(1.0, abs(u_hat[j]))
        up, dn = u_hat.copy(), u_hat.copy()
        up[j] += h
        dn[j] -= h
        jac_nat[:, j] = (natural(up) - natural(dn)) / (2 * h)
    cov_u = r_inv @ s @ r_inv if sandwich else r_inv
    cov = jac_nat @ cov_u @ jac_nat.T
    cov_r = jac_nat @ r_inv @ jac_nat.T
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    corr_eig = np.linalg.eigvalsh(corr)
    matrix = ("R^-1 S R^-1 (NONMEM MATRIX=RSR)" if sandwich else "R^-1 (the curvature of the penalised objective: MAP with priors)")
    return cov, cov_r, {"rsr": r_inv @ s @ r_inv, "r": r_inv}, {
        "ok": True, "matrix": matrix + "; R by central differences of the exact gradient",
        "condition_number": float(corr_eig[-1] / corr_eig[0]), "correlation": corr.tolist(), "r_eigenvalues": eig.tolist(),
        "r_matrix_u": r.tolist(), "s_matrix_u": s.tolist()}


def _at_bound(lay: _Layout, nat: np.ndarray, start: list) -> list[bool]:
    """Which estimates sit at a bound: a typical value within 0.1% of its range from a bound
    (two bounds) or within 1e-4 of its start's distance from its one bound; a variance or
    residual parameter below 1e-4 of its start (their bound is 0)."""
    out = []
    for i, (x, x0) in enumerate(zip(nat, start)):
        if i < len(lay.theta_bounds):
            lo, hi = lay.theta_bounds[i]["lower"], lay.theta_bounds[i]["upper"]
            if math.isfinite(lo) and math.isfinite(hi):
                out.append(bool(min(x - lo, hi - x) < 1e-3 * (hi - lo)))
            elif math.isfinite(lo) or math.isfinite(hi):
                bound = lo if math.isfinite(lo) else hi
                out.append(bool(abs(x - bound) < 1e-4 * abs(x0 - bound)))
            else:
                out.append(False)
        else:
            out.append(bool(x < 1e-4 * x0))
    return out


def _table(lay: _Layout, nat: np.ndarray, cov: np.ndarray | None, at_bound: list | None = None):
    import pandas as pd

    se = np.sqrt(np.diag(cov)) if cov is not None else np.full(len(nat), np.nan)
    return pd.DataFrame({"kind": lay.kinds, "estimate": nat, "se": se, "rse_percent": 100 * se / np.abs(nat),
                         "ci_low": nat - 1.959963984540054 * se, "ci_high": nat + 1.959963984540054 * se,
                         "near_boundary": at_bound if at_bound is not None else [False] * len(nat)},
                        index=pd.Index(lay.names, name="parameter"))
