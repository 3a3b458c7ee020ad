"""Read model files (``models/*.toml``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import ModelSpecError
from ..model import Model, build_model

__all__ = ["load_model", "model_search_path", "available_models"]


def model_search_path() -> list[Path]:
    """Folders searched for a model given by name: the repository's ``models/`` (in a
    source checkout) and the copy shipped inside the installed package."""
    here = Path(__file__).resolve()
    return [here.parents[3] / "models", here.parents[1] / "_models"]


def available_models() -> list[str]:
    """Names of the models shipped with il2pkpd."""
    names: set[str] = set()
    for folder in model_search_path():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ModelSpecError(f"`model` file {str(p)!r} does not exist")
        return p
    for folder in model_search_path():
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    raise ModelSpecError(
        f"`model` must be a path to a .toml file or one of {available_models()}, got {str(name_or_path)!r}"
    )


def load_model(name_or_path: str | Path | Model) -> Model:
    """Load a model by name (``"ivory"``, ``"pk1_oral"``) or from a ``.toml`` path.

    Raises
    ------
    ModelSpecError
        If the file is missing, is not valid TOML, or the model is invalid (the message
        names the file, the key, the line and the symbol).
    """
    if isinstance(name_or_path, Model):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some Windows editors) is not TOML
    except UnicodeDecodeError as exc:
        raise ModelSpecError(f"{path}: a model file must be UTF-8 text; byte {exc.start}: {exc.reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelSpecError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # tomllib recurses on nested arrays and inline tables
        raise ModelSpecError(f"{path}: not valid TOML for a model: arrays or inline tables nested too deeply") from None
    return build_model(data, source_file=str(path), source_text=text)
