"""Architecture: `import il2pkpd` stays light; the numerical core imports no heavy edges."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "il2pkpd"
CORE = ["units.py", "errors.py", "dosing", "model", "solve", "likelihood"]
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
    assert il2pkpd.fit.__module__ == "il2pkpd.inference.fit" and il2pkpd.load_fit.__module__ == "il2pkpd.io.fits"
