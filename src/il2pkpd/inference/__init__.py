"""Bayesian inference: the PyMC model built from a model file and a dataset (the only
place PyTensor meets JAX), and fits. PyMC is imported lazily (``pip install il2pkpd[inference]``)."""

from .pymc_model import build_pymc_model as build_pymc_model, fit_map as fit_map
from .fit import SAMPLERS as SAMPLERS, Fit as Fit, data_hash as data_hash, fit as fit, model_hash as model_hash
from .profile import Profile as Profile, profile_likelihood as profile_likelihood
