"""The population (marginal) likelihood with the random effects integrated out: FOCE, FOCE-I
and Laplace, with NONMEM's objective function value (pure JAX and NumPy).

For subject ``i`` with random effects ``eta`` (K,) ~ N(0, Omega) and data ``y_i`` let

    d_i(eta) = -2 log p(y_i | eta) - n_i log(2 pi)     (n_i: uncensored observations)
    l_i(eta) = d_i(eta) + eta' Omega^-1 eta

The conditional mode ``eta*_i`` (the empirical Bayes estimate) minimises ``l_i``, and

    OBJ_i = l_i(eta*) + log|Omega| + log|H_i|,     OFV = sum_i OBJ_i

(``-2 log`` of the Laplace approximation of the marginal likelihood without its constant
``n log 2 pi``, NONMEM's OFV) with ``H_i`` the Hessian of ``l_i / 2`` at the mode, which each
method (:data:`METHODS`) approximates its own way:

* ``"laplace"``: exact, ``(1/2) d^2 d_i / d eta^2 + Omega^-1`` (second derivatives of the ODE
  solution by nested forward mode); every row type: observations (any error model), M3
  censoring, time-to-event rows.
* ``"focei"`` (FOCE with interaction): ``Omega^-1 + sum_j I_j g_j g_j'`` with ``g_j`` the
  derivative of row ``j``'s prediction with respect to ``eta`` and ``I_j`` the row's Fisher
  information (:func:`~._residual.observation_information`), which carries NONMEM's
  ``2 prop^4 f^2 / V^2`` term for a combined error (Wang 2007;
  shared/conformance/warfarin/model.md).
* ``"foce"`` (no interaction): residual SDs are evaluated at the population prediction
  (``eta = 0``) both in ``d_i`` and in ``I_j = 1 / V_j``.

FOCE and FOCE-I need Gaussian rows: M3-censored and time-to-event rows are refused there,
as NONMEM requires LAPLACIAN for them.

The modes are found by damped Newton iterations on all subjects at once (Gauss-Newton with
the method's Hessian for FOCE/FOCE-I, exact Newton for Laplace, with a backtracking line
search and Levenberg damping where the Hessian is not positive definite). Derivatives with
respect to ``eta`` come from forward-mode differentiation of the Rodas4 loop
(``differentiation="forward"``): the step sizes are held fixed, so they are exact derivatives
of the discrete solution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import OptionError
from ..simulation import apply_iiv
from ..solver_options import DEFAULT_SOLVER_OPTIONS, SolverOptions
from ._population import JointLoglik
from ..model import ERROR_MODEL_PARAMETERS
from ._residual import check_error_parameters, observation_information, residual_sd

__all__ = ["METHODS", "MarginalLikelihood", "Modes"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Method:
    """How a Laplace-type method approximates the conditional problem.

    Attributes
    ----------
    interaction
        Residual SDs follow the individual prediction (``True``) or stay at the population
        prediction (``False``, FOCE).
    exact_hessian
        ``H_i`` from second derivatives (Laplace) or from the Fisher information (FOCE, FOCE-I).
    description
        One line for tables and messages.
    """

    interaction: bool
    exact_hessian: bool
    description: str


#: The Laplace-type methods, by name (one table; estimators and the CLI read it).
METHODS = {
    "foce": Method(False, False, "FOCE: first-order conditional estimation, residual SD at the population prediction"),
    "focei": Method(True, False, "FOCE-I: first-order conditional estimation with interaction (NONMEM METHOD=1 INTER)"),
    "laplace": Method(True, True, "Laplace: second-order expansion of each subject's conditional likelihood (NONMEM LAPLACIAN INTER)"),
}


@dataclass
class Modes:
    """Conditional modes of the random effects and the objective at them.

    Attributes
    ----------
    eta
        (B, K) the modes (empirical Bayes estimates), in the order of ``iiv_names``.
    obj
        (B,) each subject's OBJ_i (``inf`` where the solve failed).
    l
        (B,) ``l_i(eta*)``.
    log_det
        (B,) ``log|H_i|``.
    hessian
        (B, K, K) ``H_i`` (the Hessian of ``l_i / 2``): its inverse approximates the
        conditional covariance of ``eta_i``.
    grad_norm
        (B,) max |d l_i / d eta| at the returned modes.
    iterations
        Newton iterations taken.
    converged
        (B,) whether each subject's mode met the tolerance.
    status
        (B,) solver status at the modes (0 = success).
    """

    eta: np.ndarray
    obj: np.ndarray
    l: np.ndarray
    log_det: np.ndarray
    hessian: np.ndarray
    grad_norm: np.ndarray
    iterations: int
    converged: np.ndarray
    status: np.ndarray

    @property
    def ofv(self) -> float:
        """The objective function value (NONMEM's OFV): the sum of the subjects' OBJ_i."""
        return float(np.sum(self.obj))


class MarginalLikelihood:
    """The marginal likelihood of ``data`` under ``model`` by a Laplace-type method.

    Parameters
    ----------
    model
        The model: parameters with an ``iiv`` have a random effect (in declaration order).
    data
        :class:`~il2pkpd.likelihood.SubjectData` or one :class:`~il2pkpd.dosing.Records` per
        subject (see :class:`~il2pkpd.likelihood.JointLoglik`).
    method
        A key of :data:`METHODS`.
    options
        Solver settings; Rodas4 is required (forward-mode derivatives run through its loop).
        Default ``DEFAULT_SOLVER_OPTIONS["estimate"]``.
    """

    def __init__(self, model, data, method: str = "focei", options: SolverOptions | None = None):
        if method not in METHODS:
            raise OptionError(f"`method` must be one of {sorted(METHODS)}, got {method!r}")
        options = DEFAULT_SOLVER_OPTIONS["estimate"] if options is None else options
        if not options.single_loop:
            raise OptionError(f"`options.solver` must be 'rodas4' for {method} (forward-mode derivatives of the loop), got {options.solver!r}")
        self.model, self.method_name, self.method, self.options = model, method, METHODS[method], options
        self.joint = JointLoglik(model, data, options, differentiation="forward")
        joint = self.joint
        self.iiv = [(j, p.iiv.kind) for j, p in enumerate(model.parameters) if p.iiv is not None]
        self.iiv_names = [model.parameters[j].name for j, _ in self.iiv]
        # parameters an estimator can move: estimated (not fixed) or individual (IIV)
        self._varying = [j for j, p in enumerate(model.parameters) if not p.fixed or p.iiv is not None]
        if not self.iiv:
            raise OptionError(f"method {method!r} integrates random effects out, but model {model.name!r} has none: give a parameter an `iiv`")
        other = (joint._kind == 2) | ((joint._kind == 1) & (joint._cens != 0))
        if not self.method.exact_hessian and other.any():
            i, j = np.argwhere(other)[0]
            what = "an event row" if joint._kind[i, j] == 2 else "an M3-censored observation"
            raise OptionError(f"method {method!r} needs uncensored observations, but subject {joint.subjects[i].subject!r} "
                              f"row {joint._row[i, j] + 1} is {what}: use method='laplace' (as NONMEM requires LAPLACIAN)")
        self._gaussian = jnp.asarray((joint._kind == 1) & (joint._cens == 0))
        self.n_gaussian = np.sum((joint._kind == 1) & (joint._cens == 0), axis=1)
        self._cov = jnp.asarray(joint.covariates())
        self._value = jax.jit(self._value_fn)
        self._terms = jax.jit(self._terms_fn, static_argnames="exact")
        self._residual_terms = jax.jit(self._residual_terms_fn)

    # -- the conditional problem, all subjects at once --------------------------------------

    @property
    def n_subjects(self) -> int:
        return len(self.joint.subjects)

    def individual(self, theta, eta):
        """Individual parameters (B, P) from typical values ``theta`` (P,) and ``eta`` (B, K)."""
        cols = [jnp.broadcast_to(theta[j], eta.shape[:1]) for j in range(theta.shape[0])]
        for k, (j, kind) in enumerate(self.iiv):
            cols[j] = apply_iiv(kind, theta[j], eta[:, k], xp=jnp)
        return jnp.stack(cols, axis=1)

    def _data(self, theta, eta, error, sd_pred, solve=None):
        """``d_i(eta)`` (B,), the observation rows' predictions (B, O) and the solver status.
        ``solve(phi) -> (outs, states, status)`` replaces the ODE solve (see :meth:`_taylor`)."""
        outs, states, status = (solve or self._solve_phi)(self.individual(theta, eta))
        rows = self.joint._row_loglik(outs, states, error, sd_pred=sd_pred)
        d = -2.0 * jnp.sum(rows, axis=1) - self.n_gaussian * _LOG_2PI
        return d, self.joint._pred_rows(outs), status

    def _solve_phi(self, phi):
        return self.joint._solve(phi, self._cov)

    def _taylor(self, phi, order: int = 2):
        """The Taylor polynomial of the solve around individual parameters ``phi`` (B, P):
        ``phi' -> (outs, states, status)``, exact at ``phi`` in its value, its first
        derivatives with respect to every parameter that can vary (estimated or with IIV; a
        fixed parameter without IIV never moves), its second derivatives with respect to every
        pair that involves a parameter with IIV and, with ``order=3``, its third derivatives
        with respect to every triple that involves two parameters with IIV; the status is the
        solve's at ``phi``.

        That is what the gradients read. FOCE/FOCE-I's quantities are at most first order in
        the random effects (``l``, ``d l / d eta``, the Hessian from ``d pred / d eta``), and
        the gradient differentiates them once more, with respect to ``eta`` or to the
        population parameters: second order, one index a random effect. Laplace's Hessian is
        second order in the random effects, and its gradient differentiates it once more:
        third order, two indices random effects (``order=3``). Any other block would only give
        derivatives no gradient needs: it is zero. For IVORY's recovery model (8 parameters
        that vary, 3 with IIV) that is 21 second-order solves instead of 64, and 40 third-order
        ones instead of 512.

        One nested solve per order, mapped over its index tuples: what is compiled is one
        solve per order and polynomial algebra, not the objective's nested derivatives through
        the solve (for Laplace's gradient, three forward passes deep in two places: 1.5x the
        compile time and 3.2x the run time on IVORY, benchmarks/bench_laplace_gradient.py)."""
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, got {order!r}")
        free = list(self._varying)
        with_iiv = {j for j, _ in self.iiv}
        n = len(free)
        basis = _subject_basis(phi.shape, free)

        def value(x):
            outs, states, _ = self._solve_phi(x)
            return outs, states

        def tuples(k):
            """Sorted index tuples (positions in ``free``) of length k with at least k - 1 parameters with IIV."""
            return np.array([t for t in itertools.combinations_with_replacement(range(n), k) if sum(free[i] in with_iiv for i in t) >= k - 1],
                            dtype=np.int32).reshape(-1, k)

        def derivative(t):  # the mixed derivative of `value` along basis[t[0]], ..., basis[t[-1]]
            fn = value
            for c in range(t.shape[0] - 1):
                fn = (lambda f, c: lambda x: jax.jvp(f, (x,), (basis[t[c]],))[1])(fn, c)
            return jax.jvp(fn, (phi,), (basis[t[-1]],))[1]

        def symmetric(idx, blocks):
            """The full symmetric (n,) * k tensor from its blocks at sorted ``idx`` (T, k)."""
            k = idx.shape[1]

            def fill(a):
                full = jnp.zeros((n,) * k + a.shape[1:], a.dtype)
                for perm in set(itertools.permutations(range(k))):
                    full = full.at[tuple(idx[:, p] for p in perm)].set(a)
                return full

            return jax.tree.map(fill, blocks)

        z0, z1 = _jvps(value, phi, basis)
        coefficients = [z0, z1]
        for k in range(2, order + 1):
            idx = tuples(k)
            coefficients.append(symmetric(idx, jax.lax.map(derivative, jnp.asarray(idx))))
        coefficients = jax.lax.stop_gradient(coefficients)
        status = self._solve_phi(phi)[2]
        free_index = jnp.asarray(free)

        def solve(x):
            d = (x - phi)[:, free_index]
            terms = [coefficients[0],
                     jax.tree.map(lambda a: jnp.einsum("pb...,bp->b...", a, d), coefficients[1]),
                     jax.tree.map(lambda a: 0.5 * jnp.einsum("qpb...,bp,bq->b...", a, d, d), coefficients[2])]
            if order == 3:
                terms.append(jax.tree.map(lambda a: jnp.einsum("rqpb...,bp,bq,br->b...", a, d, d, d) / 6.0, coefficients[3]))
            outs, states = jax.tree.map(lambda *a: sum(a), *terms)
            return outs, states, status

        return solve

    def _sd_pred(self, theta, error, eta):
        """Where residual SDs are evaluated: ``None`` (at the prediction) with interaction,
        the population predictions (eta = 0) without."""
        if self.method.interaction:
            return None
        return self._data(theta, jnp.zeros_like(eta), error, None)[1]  # depends on theta, not on eta

    def _value_fn(self, theta, omega_inv, error, eta):
        d, _, status = self._data(theta, eta, error, self._sd_pred(theta, error, eta))
        l = d + jnp.einsum("bk,kl,bl->b", eta, omega_inv, eta)
        return jnp.where(status == 0, l, jnp.inf), status

    def _information(self, pred, error, sd_pred):
        """(B, O) each Gaussian row's Fisher information about its prediction."""
        info = jnp.zeros(pred.shape)
        joint = self.joint
        for k, spec in enumerate(self.model.observations):
            mask = self._gaussian & jnp.asarray(joint._obs_k == k)
            at = None if sd_pred is None else jnp.where(mask, sd_pred, 1.0)
            val = observation_information(jnp.where(mask, pred, 1.0), spec.error.model, sd_pred=at, **error[spec.name])
            info = info + jnp.where(mask, val, 0.0)
        return info

    def _terms_fn(self, theta, omega_inv, error, eta, exact: bool = False, solve=None):
        """``l`` (B,), its gradient (B, K) and the method's Hessian of ``l`` (B, K, K) at
        ``eta`` (the exact Hessian with ``exact``). Each subject depends on its own ``eta`` only, so one
        tangent per random effect (the same for every subject) gives every subject's own
        derivative."""
        sd_pred = self._sd_pred(theta, error, eta)
        basis = _subject_basis(eta.shape)

        def data(e):
            d, pred, _ = self._data(theta, e, error, sd_pred, solve)
            return d, pred

        def first(e):
            (d, pred), (dd, dpred) = _jvps(data, e, basis)
            return d, pred, jnp.moveaxis(dd, 0, -1), jnp.moveaxis(dpred, 0, -1)  # (B,), (B,O), (B,K), (B,O,K)

        d, pred, grad, g = first(eta)
        if exact or self.method.exact_hessian:
            hess = jnp.moveaxis(_jvps(lambda e: first(e)[2], eta, basis)[1], 0, -1)  # (B, K, K)
            hess = 0.5 * (hess + jnp.swapaxes(hess, 1, 2))
        else:
            info = self._information(pred, error, sd_pred)
            hess = 2.0 * jnp.einsum("bo,bok,bol->bkl", info, g, g)
        l = d + jnp.einsum("bk,kl,bl->b", eta, omega_inv, eta)
        grad = grad + 2.0 * eta @ omega_inv
        hess = hess + 2.0 * omega_inv[None]
        return l, grad, hess

    def modes(self, theta, omega, error: Mapping, eta0=None, tol: float = 1e-10, max_iter: int = 100) -> Modes:
        """Conditional modes and OBJ_i at population parameters.

        Parameters
        ----------
        theta
            (P,) typical values of every model parameter, in the model file's units.
        omega
            (K, K) covariance of the random effects (``iiv_names`` order).
        error
            ``{observation: {add/prop/sigma: value}}`` residual error parameters.
        eta0
            (B, K) starting values (default zeros; a previous solution makes it quick).
        tol
            Convergence: every subject's Newton decrement ``g' H^-1 g`` (exact Hessian; the
            amount by which ``l_i`` is still above its minimum, to second order) below ``tol``.
        """
        theta = jnp.asarray(theta, dtype=float)
        omega = np.asarray(omega, dtype=float)
        n_b, n_k = self.n_subjects, len(self.iiv)
        if omega.shape != (n_k, n_k):
            raise OptionError(f"`omega` must be ({n_k}, {n_k}) for the random effects {self.iiv_names}, got shape {omega.shape}")
        if theta.shape != (len(self.model.parameters),):
            raise OptionError(f"`theta` must have one value per model parameter ({len(self.model.parameters)}), got shape {theta.shape}")
        if eta0 is not None and np.shape(eta0) != (n_b, n_k):
            raise OptionError(f"`eta0` must be ({n_b}, {n_k}), got shape {np.shape(eta0)}")
        if not np.all(np.isfinite(omega)):
            raise OptionError(f"`omega` must be finite, got {omega.tolist()}")
        if not (np.allclose(omega, omega.T) and np.linalg.eigvalsh(omega)[0] > 0):
            raise OptionError(f"`omega` must be symmetric positive definite, got eigenvalues {np.linalg.eigvalsh(0.5 * (omega + omega.T)).tolist()}")
        for spec in self.model.observations:
            if spec.name not in error:
                raise OptionError(f"`error` has no parameters for observation {spec.name!r}; observations: {[o.name for o in self.model.observations]}")
            extra = set(error[spec.name]) - set(ERROR_MODEL_PARAMETERS[spec.error.model])
            if extra:
                raise OptionError(f"`error[{spec.name!r}]` has {sorted(extra)}, which a {spec.error.model} error model does not take")
            check_error_parameters(spec.error.model, **{k: float(v) for k, v in error[spec.name].items()})
        chol = np.linalg.cholesky(omega)
        omega_inv = jnp.asarray(np.linalg.inv(omega))
        log_det_omega = 2.0 * float(np.sum(np.log(np.diag(chol))))
        err = {o: {k: jnp.asarray(float(v)) for k, v in p.items()} for o, p in error.items()}
        eta = jnp.zeros((n_b, n_k)) if eta0 is None else jnp.asarray(eta0, dtype=float)
        converged = np.zeros(n_b, dtype=bool)
        exact = False
        it = 0
        for it in range(1, max_iter + 1):
            # Gauss-Newton with the method's Hessian far from the modes; exact Newton near
            # them, where Gauss-Newton converges only linearly (at a rate of 0.95 per
            # iteration for one warfarin subject with a nearly flat ktr/ka direction)
            l, grad, hess = (np.asarray(a) for a in self._terms(theta, omega_inv, err, eta, exact=exact))
            step = _newton_step(hess, grad)
            decrement = -np.einsum("bk,bk->b", grad, step)  # the Newton decrement: l - min of its model
            converged = exact & np.isfinite(l) & (decrement < tol)
            if converged.all():
                # one more full Newton step, free: quadratic convergence squares the error,
                # which the exact gradient (implicit differentiation assumes d l/d eta = 0)
                # and the covariance step's differences of it need
                eta = jnp.asarray(np.asarray(eta) + step)
                break
            if not np.isfinite(l).any():
                break
            if not exact and np.nanmax(np.where(np.isfinite(l), decrement, np.nan)) < 1.0:
                exact = True
                continue
            step[converged] = 0.0
            eta_np = np.asarray(eta)
            alpha = np.ones(n_b)
            todo = ~converged
            slope = np.einsum("bk,bk->b", grad, step)
            for _ in range(40):  # backtracking (Armijo) per subject
                trial = eta_np + alpha[:, None] * step
                l_trial = np.asarray(self._value(theta, omega_inv, err, jnp.asarray(trial))[0])
                ok = np.isfinite(l_trial) & (l_trial <= l + 1e-4 * alpha * slope)
                todo = todo & ~ok
                if not todo.any():
                    break
                alpha = np.where(todo, alpha * 0.5, alpha)
            moved = ~converged & ~todo
            eta = jnp.asarray(np.where(moved[:, None], eta_np + alpha[:, None] * step, eta_np))
            if not moved.any():
                if not exact:
                    exact = True
                    continue
                break  # no subject can decrease l further along its Newton direction
        l, grad, hess = (np.asarray(a) for a in self._terms(theta, omega_inv, err, eta))
        _, status = self._value(theta, omega_inv, err, eta)
        status = np.asarray(status)
        h_half = 0.5 * hess
        sign, log_det = np.linalg.slogdet(h_half)
        obj = np.where((status == 0) & (sign > 0), l + log_det_omega + log_det, np.inf)
        return Modes(eta=np.asarray(eta), obj=obj, l=l, log_det=log_det, hessian=h_half, grad_norm=np.max(np.abs(grad), axis=1),
                     iterations=it, converged=converged, status=status)


    # -- residuals at the modes ------------------------------------------------------------

    def residuals(self, theta, omega, error: Mapping, eta) -> dict[str, np.ndarray]:
        """PRED, IPRED, IWRES and CWRES of every uncensored observation row, (B, O) each (NaN
        elsewhere), at population parameters and conditional modes ``eta`` (B, K).

        * PRED: the prediction at ``eta = 0``; IPRED: at the modes.
        * IWRES: ``(DV - IPRED) / SD`` with the residual SD at IPRED (at PRED for FOCE).
        * CWRES (Hooker et al. 2007, as xpose4's ``ind.cwres`` computes them): per subject,
          ``COV^-1/2 (DV - IPRED + G eta)`` with ``COV = G Omega G' + diag(V)``, ``G`` the
          derivatives of the predictions with respect to ``eta`` at the modes, ``V`` the
          residual variances (at IPRED; at PRED for FOCE) and the symmetric square root.
          A log-normal error model's rows are on the log scale (``log DV``, ``log IPRED``,
          ``G / IPRED``).
        """
        theta, eta = jnp.asarray(theta, dtype=float), jnp.asarray(eta, dtype=float)
        err = {o: {k: jnp.asarray(float(v)) for k, v in q.items()} for o, q in error.items()}
        pred0, ipred, g, sd = (np.asarray(a) for a in self._residual_terms(theta, err, eta))
        omega = np.asarray(omega, dtype=float)
        joint = self.joint
        gaussian = np.asarray(self._gaussian)
        y = np.asarray(joint._y, dtype=float).copy()
        f = ipred.copy()
        g = g.copy()
        log_rows = np.zeros_like(gaussian)
        for k, spec in enumerate(self.model.observations):
            if spec.error.model == "lognormal":
                rows = gaussian & (joint._obs_k == k)
                log_rows |= rows
                with np.errstate(divide="ignore", invalid="ignore"):
                    g[rows] = g[rows] / f[rows, None]
                    y[rows], f[rows] = np.log(y[rows]), np.log(f[rows])
        nan = np.full(gaussian.shape, np.nan)
        cwres, iwres = nan.copy(), np.where(gaussian, (y - f) / sd, np.nan)
        for i in range(gaussian.shape[0]):
            rows = np.flatnonzero(gaussian[i])
            if rows.size == 0:
                continue
            gi = g[i, rows]
            cov = gi @ omega @ gi.T + np.diag(sd[i, rows] ** 2)
            lam, q = np.linalg.eigh(cov)
            r = y[i, rows] - f[i, rows] + gi @ np.asarray(eta[i])
            cwres[i, rows] = q @ ((q.T @ r) / np.sqrt(lam))
        return {"PRED": np.where(gaussian, pred0, np.nan), "IPRED": np.where(gaussian, ipred, np.nan), "IWRES": iwres, "CWRES": cwres}

    def _residual_terms_fn(self, theta, error, eta):
        """Predictions at eta = 0 and at ``eta``, their derivatives G (B, O, K) and the residual
        SDs (B, O) on each row's scale (log for a log-normal error)."""
        basis = _subject_basis(eta.shape)
        pred0 = self._data(theta, jnp.zeros_like(eta), error, None)[1]

        def pred(e):
            return self._data(theta, e, error, None)[1]

        ipred, g = _jvps(pred, eta, basis)
        g = jnp.moveaxis(g, 0, -1)
        at = ipred if self.method.interaction else pred0
        sd = jnp.ones(ipred.shape)
        for k, spec in enumerate(self.model.observations):
            mask = self._gaussian & jnp.asarray(self.joint._obs_k == k)
            val = residual_sd(jnp.where(mask, at, 1.0), spec.error.model, **error[spec.name])
            sd = jnp.where(mask, val, sd)
        return pred0, ipred, g, sd

    # -- the gradient of the objective through the modes ----------------------------------

    def objective_and_gradient(self, unpack, u, eta):
        """Each subject's OBJ_i (B,) and its exact gradient (B, U) with respect to ``u``.

        ``unpack(u) -> (theta (P,), omega (K, K), error)`` is a JAX function of the
        estimator's parameter vector ``u``; ``eta`` (B, K) the conditional modes at ``u``
        (:meth:`modes`, converged). With ``F_i = l_i + log|Omega| + log|H_i|`` evaluated at
        the mode, which moves with ``u`` (implicit function theorem: ``d eta*/du =
        -(d2 l/d eta2)^-1 d2 l/(d eta du)``) while ``d l / d eta = 0`` there,

            dOBJ_i/du = dF_i/du|_eta - v_i' d(dl_i/d eta)/du|_eta,   v_i = (d2 l_i/d eta2)^-1 d log|H_i|/d eta

        so one forward-mode pass over ``u`` at fixed ``eta`` gives it, with ``v`` from the
        exact Hessian of ``l`` and the derivative of ``log|H|`` (one order more of the ODE
        solution's derivatives: second order for FOCE/FOCE-I, third for Laplace). Not a
        finite difference anywhere.
        """
        obj, jac = self._jitted(self._objective_and_gradient, unpack)(jnp.asarray(u, dtype=float), jnp.asarray(eta, dtype=float))
        return np.asarray(obj), np.asarray(jac)

    def _jitted(self, method, unpack):
        """``method(unpack, u, eta)`` compiled, as a function of ``(u, eta)``. An ``unpack`` that
        is a JAX pytree (:class:`~il2pkpd.inference.estimation._Unpack`) is an argument of the
        compiled program, so its values (fixed typical values) are not compiled in; any other
        callable is closed over, and compiled once per function (the function itself is kept,
        not its id, which could be reused after it is freed)."""
        cache = self.__dict__.setdefault("_jit_cache", {})
        leaves = jax.tree.leaves(unpack)  # a plain function is a single leaf of its own
        if leaves and all(isinstance(leaf, jax.Array) for leaf in leaves):
            key = (method.__name__, "pytree")
            if key not in cache:
                cache[key] = jax.jit(lambda up, u, eta: method(up, u, eta))
            compiled = cache[key]
            return lambda u, eta: compiled(unpack, u, eta)
        key = method.__name__
        if key not in cache or cache[key][0] is not unpack:
            cache[key] = (unpack, jax.jit(lambda u, eta: method(unpack, u, eta)))
        return cache[key][1]

    def _derivative_solve(self, theta, eta, order: int | None = None):
        """What the derivatives at the modes solve with: the Taylor polynomial around the modes,
        to ``order`` (default: the order the method's gradient reads, second for FOCE/FOCE-I and
        third for Laplace, whose Hessian is already second order)."""
        order = (3 if self.method.exact_hessian else 2) if order is None else order
        return self._taylor(jax.lax.stop_gradient(self.individual(theta, eta)), order=order)

    def _objective_and_gradient(self, unpack, u, eta):
        theta, omega, err = unpack(u)
        omega_inv = jnp.linalg.inv(omega)
        basis = _subject_basis(eta.shape)
        # FOCE/FOCE-I need the solution's derivatives to second order at the modes, Laplace
        # (whose Hessian is itself second order) to third: one nested solve per order gives
        # them all, and the rest is algebra on their Taylor polynomial (exact to that order)
        solve = self._derivative_solve(theta, eta)

        def log_det_h(e):
            return jnp.linalg.slogdet(0.5 * self._terms_fn(theta, omega_inv, err, e, solve=solve)[2])[1]

        d_log_det = jnp.moveaxis(_jvps(log_det_h, eta, basis)[1], 0, -1)  # (B, K)
        hess_l = self._terms_fn(theta, omega_inv, err, eta, exact=True, solve=solve)[2]
        v = jax.lax.stop_gradient(jnp.linalg.solve(hess_l, d_log_det[..., None])[..., 0])

        def phi(u):
            theta, omega, err = unpack(u)
            l, grad, hess = self._terms_fn(theta, jnp.linalg.inv(omega), err, eta, solve=solve)
            return l + jnp.linalg.slogdet(omega)[1] + jnp.linalg.slogdet(0.5 * hess)[1] - jnp.einsum("bk,bk->b", v, grad)

        obj = phi(u)
        status = solve(self.individual(theta, eta))[2]  # the Taylor polynomial carries the solve's status at the modes
        return jnp.where(status == 0, obj, jnp.inf), jnp.moveaxis(_jvps(phi, u, jnp.eye(u.shape[0], dtype=u.dtype))[1], 0, -1)


    def mode_sensitivity(self, unpack, u, eta):
        """How each subject's conditional mode moves with the population parameters: ``d eta*_i / du``
        (B, K, U), exact (implicit function theorem at the mode, not a finite difference):

            d eta*_i / du = -(d2 l_i / d eta2)^-1 d2 l_i / (d eta du)

        with the exact Hessian of ``l_i`` whatever the method (the mode of ``l_i`` is what moves)
        and the mixed derivative by one forward-mode pass over ``u`` at fixed ``eta``. ``unpack``
        and ``eta`` (converged modes at ``u``) as in :meth:`objective_and_gradient`. Linearising
        the modes in ``u`` gives the random effects' covariance with the population parameters
        under the Laplace approximation (``Cov(eta_i, u) = J_i Cov(u)``), which a NUTS mass
        matrix started from a FOCE-I fit needs (:mod:`il2pkpd.inference.warm_start`)."""
        return np.asarray(self._jitted(self._mode_sensitivity, unpack)(jnp.asarray(u, dtype=float), jnp.asarray(eta, dtype=float)))

    def _mode_sensitivity(self, unpack, u, eta):
        theta, omega, err = unpack(u)
        # second order whatever the method: the exact Hessian in eta and the mixed derivative
        # in (eta, u), each exact from the second-order polynomial (Laplace's third order
        # would only add a compilation)
        solve = self._derivative_solve(theta, eta, order=2)
        hess_l = self._terms_fn(theta, jnp.linalg.inv(omega), err, eta, exact=True, solve=solve)[2]

        def grad_l(u):
            theta, omega, err = unpack(u)
            return self._terms_fn(theta, jnp.linalg.inv(omega), err, eta, solve=solve)[1]

        mixed = jnp.moveaxis(_jvps(grad_l, u, jnp.eye(u.shape[0], dtype=u.dtype))[1], 0, -1)  # (B, K, U)
        return -jnp.linalg.solve(hess_l, mixed)


def _jvps(fn, x, tangents):
    """``(fn(x), stacked JVPs of fn at x along each of tangents (C, ...))``, the tangents taken
    one after another (``lax.map``), not batched (``vmap``): the ODE solve is a long chain of
    small scalar operations, which on the CPU run as one fused kernel unbatched but as many
    small batched ones under ``vmap`` (measured on the IVORY model: 3 tangents 0.6 s batched,
    0.09 s in sequence, for 6 subjects)."""
    primals, tangents_out = jax.lax.map(lambda t: jax.jvp(fn, (x,), (t,)), tangents)
    return jax.tree.map(lambda a: a[0], primals), tangents_out


def _subject_basis(shape, columns=None):
    """Tangents (C, B, K) for forward-mode derivatives of a batch whose subjects are
    independent: tangent ``c`` moves column ``columns[c]`` (default every column) of every
    subject at once, which gives each subject its own derivative in one pass."""
    columns = list(range(shape[1])) if columns is None else list(columns)
    eye = jnp.eye(shape[1])[jnp.asarray(columns, dtype=int)]
    return jnp.broadcast_to(eye[:, None, :], (len(columns), *shape))


def _newton_step(hess: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``-H^-1 g`` per subject, with Levenberg damping where ``H`` is not positive definite."""
    eig = np.linalg.eigvalsh(hess)
    shift = np.where(eig[:, 0] > 1e-10 * np.maximum(eig[:, -1], 1e-300), 0.0, 1e-6 + np.abs(eig[:, 0]) * 1.1)
    h = hess + shift[:, None, None] * np.eye(hess.shape[1])
    return -np.linalg.solve(h, grad[..., None])[..., 0]
