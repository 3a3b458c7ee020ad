"""Solver settings, and the defaults of every entry point, defined once.

This module is light (no JAX): the command line reads its defaults from here when it builds
its options, so ``il2pkpd <command> --help`` and the Python functions state the same values
(``tests/unit/test_cli.py`` checks each command against its Python function).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from types import MappingProxyType

from .errors import OptionError

__all__ = ["SOLVER_NAMES", "SolverOptions", "DEFAULT_SOLVER_OPTIONS", "default_options"]

#: the ODE solvers (il2pkpd.solve maps each to its implementation)
SOLVER_NAMES = ("tsit5", "dopri5", "dopri8", "kvaerno5", "rodas4")


@dataclass(frozen=True)
class SolverOptions:
    """Solver settings.

    Attributes
    ----------
    solver
        ``"tsit5"`` (default, explicit), ``"dopri5"``, ``"dopri8"``, ``"rodas4"``
        (linearly implicit Rosenbrock, L-stable: for stiff models and long horizons, e.g.
        years of event follow-up after the last dose) or ``"kvaerno5"`` (implicit ESDIRK).
    rtol, atol
        Relative and absolute tolerances (atol in the states' declared units).
    max_steps
        Maximum solver steps: over a subject's whole horizon for Rodas4 (one loop), between
        two consecutive events for the other solvers.
    ss_max_iter
        Maximum dosing intervals iterated to reach a steady state (SS records).
    adjoint_chunk
        Entries (accepted steps plus events) between the checkpoints Rodas4's adjoint keeps
        per subject when a solve is differentiated; ``None`` (default): the square root of
        the most entries ``max_steps`` allows, which keeps memory at ~2 sqrt(N) states.
    path
        ``"auto"`` (Rodas4 runs as one loop per subject with its own adjoint; the other
        solvers run one diffrax solve per event interval), ``"loop"`` or ``"segments"`` to
        force one (for benchmarks and cross-checks; ``"loop"`` needs Rodas4).
    batching
        How a batch of subjects runs inside one compiled call: ``"auto"`` (default:
        ``"map"`` on CPU, ``"vmap"`` on an accelerator), ``"map"`` (one subject after another,
        ``lax.map``: on CPU a vmapped batch waits for its slowest subject at every step or
        event, 2-5x slower on the IVORY model) or ``"vmap"`` (all subjects in lockstep).
        Results do not depend on it.
    """

    solver: str = "tsit5"
    rtol: float = 1e-8
    atol: float = 1e-12
    max_steps: int = 100_000
    ss_max_iter: int = 2000
    adjoint_chunk: int | None = None
    path: str = "auto"
    batching: str = "auto"

    def __post_init__(self):
        if self.solver not in SOLVER_NAMES:
            raise OptionError(f"`solver` must be one of {sorted(SOLVER_NAMES)}, got {self.solver!r}")
        if not 0 < self.rtol < 1:
            raise OptionError(f"`rtol` must be in (0, 1), got {self.rtol!r}")
        if not self.atol > 0:
            raise OptionError(f"`atol` must be > 0, got {self.atol!r}")
        if int(self.max_steps) != self.max_steps or self.max_steps < 1:
            raise OptionError(f"`max_steps` must be a positive integer, got {self.max_steps!r}")
        if self.adjoint_chunk is not None and (int(self.adjoint_chunk) != self.adjoint_chunk or self.adjoint_chunk < 1):
            raise OptionError(f"`adjoint_chunk` must be a positive integer or None, got {self.adjoint_chunk!r}")
        if self.path not in ("auto", "loop", "segments"):
            raise OptionError(f"`path` must be 'auto', 'loop' or 'segments', got {self.path!r}")
        if self.batching not in ("auto", "map", "vmap"):
            raise OptionError(f"`batching` must be 'auto', 'map' or 'vmap', got {self.batching!r}")
        if self.path == "loop" and self.solver != "rodas4":
            raise OptionError(f"`path='loop'` needs solver='rodas4', got solver={self.solver!r}")

    def identity(self) -> dict:
        """The settings that decide the numbers, for a stored run's identity: every field but
        ``batching`` (results do not depend on it, and folders written before it existed
        must still resume)."""
        return {k: v for k, v in asdict(self).items() if k != "batching"}

    @property
    def single_loop(self) -> bool:
        """Whether subjects are integrated as one Rodas4 loop each (``_loop``)."""
        return self.path == "loop" or (self.path == "auto" and self.solver == "rodas4")


#: The solver settings each use starts from when none are given, and why:
#:
#: * ``simulate`` (``simulate()``, ``il2pkpd simulate`` and ``predict``): printed and plotted
#:   numbers, so tight (rtol 1e-8); Tsit5, which needs no Jacobian.
#: * ``fit`` (``fit()``, ``il2pkpd fit``, the PyMC model): rtol 1e-6, NONMEM's TOL=6; a
#:   likelihood needs ~6 digits, not 8.
#: * ``calibration`` (aggregate-data and virtual-population likelihoods): Rodas4 at rtol
#:   1e-6: two years of event follow-up after the last dose are stiff.
#: * ``sweep`` (``sweep()``, ``il2pkpd sweep``): Rodas4 at rtol 1e-4: decision metrics need 3
#:   digits (``benchmarks/bench_sweep_tolerance.py``: every IVORY metric within 3.4e-4 of its
#:   spread of the rtol 1e-8 value), and it is 1.7-1.8x faster than rtol 1e-6.
#: * ``estimate`` (FOCE, FOCE-I, Laplace): Rodas4, whose loop JAX differentiates in forward
#:   mode to second order, at rtol 1e-8: the objective is compared with NONMEM's to 0.01 and
#:   its gradient drives a quasi-Newton optimiser, which solver noise would stall.
DEFAULT_SOLVER_OPTIONS = MappingProxyType({
    "simulate": SolverOptions(),
    "fit": SolverOptions(rtol=1e-6, atol=1e-9),
    "calibration": SolverOptions(solver="rodas4", rtol=1e-6, atol=1e-9),
    "sweep": SolverOptions(solver="rodas4", rtol=1e-4, atol=1e-7),
    "estimate": SolverOptions(solver="rodas4", rtol=1e-8, atol=1e-10),
    "optimize": SolverOptions(solver="rodas4", rtol=1e-6, atol=1e-9),
})


def default_options(use: str, **given) -> SolverOptions:
    """The defaults of ``use`` (a key of :data:`DEFAULT_SOLVER_OPTIONS`) with the settings
    ``given`` that are not ``None`` replacing them (validated)."""
    if use not in DEFAULT_SOLVER_OPTIONS:
        raise OptionError(f"no solver defaults for {use!r}; known: {sorted(DEFAULT_SOLVER_OPTIONS)}")
    return replace(DEFAULT_SOLVER_OPTIONS[use], **{k: v for k, v in given.items() if v is not None})
