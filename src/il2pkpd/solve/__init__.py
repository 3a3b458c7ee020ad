"""ODE integration with exact NONMEM dose events (JAX), and a SciPy backend for checks."""

from ._config import compilation_cache_dir as compilation_cache_dir, configure_jax as configure_jax

configure_jax()

from ._events import Kind as Kind, SubjectEvents as SubjectEvents, build_events as build_events, EventBatch as EventBatch  # noqa: E402
from ._jax import SolveStatus as SolveStatus, resolve_batching as resolve_batching  # noqa: E402
from ..solver_options import SolverOptions as SolverOptions  # noqa: E402
from ._run import BatchSolution as BatchSolution, BatchSolver as BatchSolver, record_covariates as record_covariates  # noqa: E402
from ._run import solve_subjects as solve_subjects  # noqa: E402
from ._scipy import solve_scipy as solve_scipy  # noqa: E402
