"""JAX configuration il2pkpd needs: float64, and the persistent compilation cache.

The cache lives in the user cache directory (``platformdirs``), so a second process
loads compiled solvers instead of compiling them again. ``IL2PKPD_NO_COMPILE_CACHE=1``
turns it off; ``IL2PKPD_CACHE_DIR`` moves it.

``IL2PKPD_CPU_DEVICES=N`` (or ``all``) makes the host's cores ``N`` JAX devices; batch solves
that run subjects one after another (``lax.map``, the CPU default) then split the subjects
over them, so one likelihood gradient uses every core. It must be set before JAX starts
(before the first computation in the process); too late, it is ignored with a warning.
Only devices asked for this way are used: a process can have many CPU devices for other
reasons (PyMC's JAX sampling module sets ``XLA_FLAGS=--xla_force_host_platform_device_count=100``
when imported, and every process started afterwards inherits it), and splitting 60 subjects
over 100 devices on two cores is only padding and overhead. Only Rodas4 (the one-loop
path with its own adjoint) is split: diffrax's checkpointed adjoint fails to transpose inside
``shard_map``.
"""

from __future__ import annotations

import os

import jax

_done = False
_requested_devices = 1  # what IL2PKPD_CPU_DEVICES asked for and JAX accepted


def configure_jax() -> None:
    """Enable x64 and the persistent compilation cache (idempotent)."""
    global _done
    if _done:
        return
    jax.config.update("jax_enable_x64", True)
    _cpu_devices(os.environ.get("IL2PKPD_CPU_DEVICES", ""))
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


def _cpu_devices(value: str) -> None:
    """Apply ``IL2PKPD_CPU_DEVICES`` (empty: leave JAX's default of one CPU device)."""
    if not value:
        return
    import warnings

    from ..errors import Il2pkpdWarning

    n = (os.cpu_count() or 1) if value.strip().lower() == "all" else (int(value) if value.strip().isdigit() else 0)
    if n < 1:
        warnings.warn(f"IL2PKPD_CPU_DEVICES must be a positive integer or 'all', got {value!r}; using one CPU device", Il2pkpdWarning, stacklevel=3)
        return
    global _requested_devices
    try:
        jax.config.update("jax_num_cpu_devices", n)
        _requested_devices = n
    except RuntimeError:  # the backend already started in this process
        warnings.warn(f"IL2PKPD_CPU_DEVICES={value} came too late (JAX had already started); using {jax.device_count()} device(s)",
                      Il2pkpdWarning, stacklevel=3)


def subject_devices() -> list:
    """The CPU devices a ``lax.map`` batch splits its subjects over ([] for one device).

    Those ``IL2PKPD_CPU_DEVICES`` asked for, never more than JAX has; other CPU devices
    (see the module docstring) and accelerators are left alone.
    """
    if _requested_devices < 2 or jax.default_backend() != "cpu":
        return []
    devices = jax.devices()[:_requested_devices]
    return devices if len(devices) > 1 else []


def compilation_cache_dir() -> str | None:
    """Where compiled functions are cached (``None`` when the cache is off)."""
    return jax.config.jax_compilation_cache_dir
