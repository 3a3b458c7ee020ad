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
    data, text = _read(path)
    return build_model(_extend(path, data, [path.resolve()]), source_file=str(path), source_text=text)


#: tables a variant adds to or overrides in the model it extends, entry by entry
_MERGED = ("constants", "covariates", "parameters", "states", "odes", "outputs", "observations", "events")


def _read(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some Windows editors) is not TOML
    except UnicodeDecodeError as exc:
        raise ModelSpecError(f"{path}: a model file must be UTF-8 text; byte {exc.start}: {exc.reason}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ModelSpecError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # tomllib recurses on nested arrays and inline tables
        raise ModelSpecError(f"{path}: not valid TOML for a model: arrays or inline tables nested too deeply") from None


def _extend(path: Path, data: dict, seen: list[Path]) -> dict:
    """A variant (``[model] extends = "ivory"``) as one model: the base file's tables with the
    variant's entries added, or merged key by key into the base's entry of the same name (new
    states come after the base's). The variant must have its own name. The base is looked for
    beside the variant, then by name. A file that extends nothing is returned as it is."""
    if not (isinstance(data.get("model"), dict) and "extends" in data["model"]):
        return data
    name = data["model"]["extends"]
    if not isinstance(name, str) or not name:
        raise ModelSpecError(f"{path}: [model] `extends` must name a model file, got {name!r}")
    beside = path.parent / f"{name}.toml"
    base_path = beside if beside.is_file() else _resolve(name)
    if base_path.resolve() in seen:
        raise ModelSpecError(f"{path}: [model] `extends` = {name!r} makes a cycle ({' -> '.join(p.name for p in seen)} -> {base_path.name})")
    base = _extend(base_path, _read(base_path)[0], seen + [base_path.resolve()])
    unknown = sorted(set(data) - set(_MERGED) - {"model"})
    if unknown:
        raise ModelSpecError(f"{path}: unknown sections {unknown} (a model file has [model] and {list(_MERGED)})")
    if not data["model"].get("name") or data["model"]["name"] == base.get("model", {}).get("name"):
        # a variant under its base's name would be loaded (by sweeps, fits, claims) as the base
        raise ModelSpecError(f"{path}: a variant needs its own [model] `name`, not {data['model'].get('name')!r}")
    merged = {"model": {k: v for k, v in {**base.get("model", {}), **data["model"]}.items() if k != "extends"}}
    for section in _MERGED:
        b, v = base.get(section, {}), data.get(section, {})
        if not isinstance(v, dict):
            raise ModelSpecError(f"{path}: [{section}] must be a table, got {type(v).__name__}")
        if b or v:
            # an entry the variant redefines keeps the base's other keys (a new `value` keeps
            # the prior, IIV, label and bounds); an ODE (a string) is replaced whole
            merged[section] = {**b, **{k: ({**b[k], **e} if isinstance(e, dict) and isinstance(b.get(k), dict) else e) for k, e in v.items()}}
    return merged
