"""JAX configuration il2pkpd needs: float64, and the persistent compilation cache.

The cache lives in the user cache directory (``platformdirs``), so a second process
loads compiled solvers instead of compiling them again. ``IL2PKPD_NO_COMPILE_CACHE=1``
turns it off; ``IL2PKPD_CACHE_DIR`` moves it.
"""

from __future__ import annotations

import os

import jax

_done = False


def configure_jax() -> None:
    """Enable x64 and the persistent compilation cache (idempotent)."""
    global _done
    if _done:
        return
    jax.config.update("jax_enable_x64", True)
    if os.environ.get("IL2PKPD_NO_COMPILE_CACHE", "") not in ("1", "true", "yes"):
        from platformdirs import user_cache_dir

        path = os.environ.get("IL2PKPD_CACHE_DIR") or os.path.join(user_cache_dir("il2pkpd"), "jax")
        try:
            os.makedirs(path, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", path)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        except OSError:  # read-only home: run without the cache
            pass
    _done = True


def compilation_cache_dir() -> str | None:
    """Where compiled functions are cached (``None`` when the cache is off)."""
    return jax.config.jax_compilation_cache_dir
