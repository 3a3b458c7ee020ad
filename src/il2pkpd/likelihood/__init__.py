"""Likelihoods (pure JAX): residual error models, M3 censoring, time-to-event, and
aggregate-data likelihoods for published results."""

from ._aggregate import (
    fixed_normals as fixed_normals,
    loglik_count as loglik_count,
    loglik_dose_for_target as loglik_dose_for_target,
    loglik_summary as loglik_summary,
    se_from_ci as se_from_ci,
)
from ._residual import (
    ERROR_MODELS as ERROR_MODELS,
    check_error_parameters as check_error_parameters,
    loglik_censored as loglik_censored,
    loglik_observation as loglik_observation,
    residual_sd as residual_sd,
)
from ._tte import loglik_time_to_event as loglik_time_to_event
from ._population import JointLoglik as JointLoglik, default_error_params as default_error_params
from ._virtual import VirtualPopulation as VirtualPopulation, individual_theta as individual_theta
from ._data import SubjectData as SubjectData, subject_data as subject_data
from ._marginal import METHODS as METHODS, MarginalLikelihood as MarginalLikelihood, Modes as Modes
