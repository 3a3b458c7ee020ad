"""il2pkpd: PK/PD models of low-dose s.c. aldesleukin (IL-2), solved with JAX.

dose -> IL-2 exposure -> Treg (and NK) response -> arterial inflammation (FDG-PET TBR)
-> recurrent events, as compartment ODEs with exact NONMEM dosing semantics.

``import il2pkpd`` is light: JAX, sympy and xarray load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    DataFormatError as DataFormatError,
    Il2pkpdError as Il2pkpdError,
    Il2pkpdWarning as Il2pkpdWarning,
    ModelSpecError as ModelSpecError,
    OptionError as OptionError,
    RegimenError as RegimenError,
    ShapeError as ShapeError,
    SolverError as SolverError,
    UnitsWarning as UnitsWarning,
)

# Public name -> (module, attribute); imported on first use. The facade may reach every layer;
# entry points that accept files (simulate, fit, sweep) are io's, which reads them and calls
# the computing layer (ARCHITECTURE.md, "Layers").
_LAZY = {
    "simulate": ("il2pkpd.io.entry", "simulate"),
    "load_model": ("il2pkpd.io.model_file", "load_model"),
    "available_models": ("il2pkpd.io.model_file", "available_models"),
    "build_model": ("il2pkpd.model", "build_model"),
    "Model": ("il2pkpd.model", "Model"),
    "parse_regimen": ("il2pkpd.dosing", "parse_regimen"),
    "Regimen": ("il2pkpd.dosing", "Regimen"),
    "DoseBlock": ("il2pkpd.dosing", "DoseBlock"),
    "Record": ("il2pkpd.dosing", "Record"),
    "Records": ("il2pkpd.dosing", "Records"),
    "read_nonmem_csv": ("il2pkpd.io.nonmem", "read_nonmem_csv"),
    "predict": ("il2pkpd.prediction", "predict"),
    "datasets": ("il2pkpd.datasets", None),
    "SolverOptions": ("il2pkpd.solve", "SolverOptions"),
    "SolveStatus": ("il2pkpd.solve", "SolveStatus"),
    "sweep": ("il2pkpd.io.entry", "sweep"),
    "read_sweep": ("il2pkpd.io.sweep_store", "read_sweep"),
    "SweepDesign": ("il2pkpd.design.sweep_design", "SweepDesign"),
    "fit": ("il2pkpd.io.fits", "fit"),
    "Fit": ("il2pkpd.inference.fit", "Fit"),
    "load_fit": ("il2pkpd.io.fits", "load_fit"),
    "write_fit": ("il2pkpd.io.fits", "write_fit"),
}

__all__ = [
    "__version__",
    "DataFormatError",
    "Il2pkpdError",
    "Il2pkpdWarning",
    "ModelSpecError",
    "OptionError",
    "RegimenError",
    "ShapeError",
    "SolverError",
    "UnitsWarning",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = importlib.import_module(module) if attr is None else getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'il2pkpd' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
