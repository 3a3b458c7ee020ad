"""Architecture: `import il2pkpd` stays light; the numerical core imports no heavy edges."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "il2pkpd"
CORE = ["units.py", "errors.py", "dosing", "model", "solve", "simulation.py", "prediction.py", "likelihood"]
FORBIDDEN = {"pandas", "matplotlib", "pymc", "pytensor", "arviz", "typer", "rich"}


def test_import_il2pkpd_is_light():
    code = "import sys, il2pkpd; heavy = [m for m in ('jax', 'sympy', 'pandas', 'matplotlib', 'pymc', 'xarray') if m in sys.modules]; print(heavy)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _core_files():
    for entry in CORE:
        p = SRC / entry
        yield from ([p] if p.is_file() else sorted(p.rglob("*.py")))


def test_numerical_core_imports_no_edge_packages():
    for f in _core_files():
        bad = _imports(f) & FORBIDDEN
        assert not bad, f"{f.relative_to(SRC)} imports {bad}"


def test_numerical_core_does_no_file_io():
    for f in _core_files():
        tree = ast.parse(f.read_text())
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert "open" not in calls, f"{f.relative_to(SRC)} opens files"


def test_every_lazy_top_level_name_resolves():
    """`il2pkpd.fit`, `il2pkpd.load_fit`, ... (the README's API) are reachable from the top level."""
    import il2pkpd

    for name in il2pkpd._LAZY:
        assert getattr(il2pkpd, name) is not None, name
    assert il2pkpd.load_fit.__module__ == "il2pkpd.io.fits"
    # the entry points that accept files are io's; they document (and wrap) the computing function
    from il2pkpd.inference.fit import fit
    from il2pkpd.simulation import simulate

    assert il2pkpd.fit.__module__ == "il2pkpd.io.fits" and il2pkpd.fit.__wrapped__ is fit and il2pkpd.fit.__doc__ == fit.__doc__
    assert il2pkpd.simulate.__wrapped__ is simulate and il2pkpd.simulate.__doc__ == simulate.__doc__


# -- layering contract (ARCHITECTURE.md, "Layers") ------------------------------------------

#: Layers from the core up, as ARCHITECTURE.md lists them bottom to top. A module may import
#: from its own layer or below. Keys are the first name under ``il2pkpd`` (a top-level module
#: or a subpackage); every module must be listed, so a new one cannot escape the contract.
LAYERS = ("errors", "units", "dosing", "model", "solve", "simulate", "likelihood", "data", "diagnostics", "design",
          "inference", "io", "plot", "cli")
LAYER_OF = {
    "errors": "errors", "units": "units", "dosing": "dosing", "model": "model", "solve": "solve", "solver_options": "solve",
    "simulation": "simulate", "prediction": "simulate", "likelihood": "likelihood", "datasets": "data",
    "diagnostics": "diagnostics", "design": "design", "inference": "inference", "io": "io", "plot": "plot",
    "cli": "cli", "__main__": "cli", "": "cli",
}
#: Names the facade ``il2pkpd/__init__.py`` defines itself, before it imports anything: package
#: metadata, importable from any layer.
ROOT_METADATA = {"__version__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC.parent / rel).with_suffix(".py").is_file() or (SRC.parent / rel / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _il2pkpd_imports(path: Path):
    """(line, imported module, imported name or None) of every il2pkpd import in ``path``, at
    any depth (lazy imports in functions count), except under ``if TYPE_CHECKING:``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "il2pkpd":
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] == "il2pkpd":
                for alias in node.names:
                    # `from il2pkpd.x import y` imports module il2pkpd.x.y when there is one
                    sub = f"{source}.{alias.name}"
                    yield (node.lineno, sub, None) if _is_module(sub) else (node.lineno, source, alias.name)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(path.read_text()))


def _unit(module: str) -> str:
    """The top-level module or subpackage that ``module`` belongs to ("" for the facade)."""
    return module.split(".")[1] if "." in module else ""


def _layer(module: str, name: str | None = None) -> str:
    if module == "il2pkpd" and name in ROOT_METADATA:
        return LAYERS[0]
    return LAYER_OF[_unit(module)]


def _source_files():
    return sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer():
    unknown = [m for m in map(_module_name, _source_files()) if _unit(m) not in LAYER_OF]
    assert not unknown, f"modules without a layer: {unknown}; add them to LAYER_OF (and to ARCHITECTURE.md)"


def test_no_module_imports_from_a_higher_layer():
    """A module imports only from its own layer or below (ARCHITECTURE.md, "Layers").

    Decisions beyond the layer list:

    * ``il2pkpd/__init__.py`` is the public facade: it re-exports names from every layer
      (lazily, through ``_LAZY``), so it ranks with ``cli`` at the top, and a module inside the
      package must not import those names from it. Only the package metadata it defines
      itself (``__version__``) may be imported from any layer. ``__main__.py`` runs the CLI and
      ranks with it.
    * ``datasets/`` is packaged data (the published-evidence CSV) with its reader. Reading a
      file is what the numerical core (units .. likelihood) must never do, so it ranks just
      above the core (layer ``data``); it is a leaf that imports no il2pkpd module
      (:func:`test_datasets_is_a_leaf`).
    * ``prediction.py`` (predictions at a dataset's records) sits in the simulate layer,
      beside ``simulation.py``.
    * ``solver_options.py`` (``SolverOptions`` and every entry point's defaults, no JAX, so
      the CLI can read them when it builds its options) is part of the solve layer.
    * Imports under ``if TYPE_CHECKING:`` (annotations only) do not count; lazy imports inside
      functions do.
    """
    bad = []
    for f in _source_files():
        importer = _module_name(f)
        mine = LAYERS.index(_layer(importer))
        for line, module, name in _il2pkpd_imports(f):
            theirs = LAYERS.index(_layer(module, name))
            if theirs > mine:
                what = module if name is None else f"{module}.{name}"
                bad.append(f"{f.relative_to(SRC.parent)}:{line}: {importer} (layer {_layer(importer)}) imports {what} "
                           f"(layer {_layer(module, name)}, higher)")
    assert not bad, "imports against the layering of ARCHITECTURE.md:\n" + "\n".join(bad)


def test_datasets_is_a_leaf():
    imports = [(f.name, line, m) for f in sorted((SRC / "datasets").rglob("*.py")) for line, m, _ in _il2pkpd_imports(f)]
    assert not imports, f"il2pkpd.datasets must import no il2pkpd module (it ranks below diagnostics): {imports}"


def _private(module: str, name: str | None) -> bool:
    def hidden(part: str) -> bool:
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    return any(hidden(p) for p in module.split(".")) or (name is not None and hidden(name))


def _private_imports():
    """(importer, module, name, where) of every import of another package's private name."""
    for f in _source_files():
        importer = _module_name(f)
        for line, module, name in _il2pkpd_imports(f):
            if _private(module, name) and _unit(module) != _unit(importer):
                yield importer, module, name, f"{f.relative_to(SRC.parent)}:{line}"


def test_no_module_imports_private_names_of_another_package():
    """Packages talk through public names (re-exported by their ``__init__``): no module imports
    a ``_name`` or anything from a ``_module`` of another il2pkpd package or top-level module.
    Imports inside one package (``il2pkpd.dosing._regimen`` from ``il2pkpd.dosing._records``)
    are its own business."""
    bad = [f"{where}: {importer} imports {module if name is None else f'{name} from {module}'} (private)"
           for importer, module, name, where in _private_imports()]
    assert not bad, "private names reached from another package (re-export them publicly instead):\n" + "\n".join(bad)

