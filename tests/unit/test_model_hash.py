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
