"""A model's fingerprint is the same in every process: fits and sweep folders compare it to
detect a changed model, so it must not depend on Python's hash randomisation (set order)."""

from __future__ import annotations

import os
import subprocess
import sys

import il2pkpd
from il2pkpd.model import model_hash


def test_model_hash_does_not_depend_on_hash_randomisation():
    code = "import il2pkpd; from il2pkpd.model import model_hash; print(model_hash(il2pkpd.load_model('ivory')))"
    seen = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed, JAX_PLATFORMS="cpu")
        seen.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip())
    assert seen == {model_hash(il2pkpd.load_model("ivory"))}


def test_model_hash_changes_with_the_model():
    m = il2pkpd.load_model("pk1_oral")
    assert model_hash(m.with_values(cl=2.0)) != model_hash(m)


def test_model_hash_ignores_descriptions_and_sources_but_not_labels_or_priors():
    """Correcting a description or a source leaves stored fits valid; a label (a NONMEM name
    datasets use), a prior or a value does not."""
    from dataclasses import replace

    m = il2pkpd.load_model("ivory")
    params = list(m.parameters)
    edited = m.replace(parameters=tuple(replace(p, description=p.description + " (corrected)", source="S1") for p in params))
    assert model_hash(edited) == model_hash(m)
    for change in ({"label": "KAX"}, {"prior": {"dist": "lognormal", "median": 9.0, "sigma": 0.5}}, {"value": params[1].value * 1.01}):
        changed = m.replace(parameters=tuple(replace(p, **change) if p.name == params[1].name else p for p in params))
        assert model_hash(changed) != model_hash(m), change


def test_model_hash_covers_the_drug():
    """The drug sets dose conversions (IU <-> mg <-> nmol): a model for another drug computes
    other numbers from the same regimen text."""
    m = il2pkpd.load_model("ivory")
    assert model_hash(m.replace(drug=None)) != model_hash(m)
