"""Model specification, validation and compilation (sympy -> JAX).

A model is an immutable value built from a mapping (``models/*.toml``) or from Python.
"""

from ._spec import (
    ERROR_MODELS as ERROR_MODEL_PARAMETERS,
    ConstantSpec as ConstantSpec,
    CovariateSpec as CovariateSpec,
    ErrorModelSpec as ErrorModelSpec,
    EventSpec as EventSpec,
    IIVSpec as IIVSpec,
    Model as Model,
    ObservationSpec as ObservationSpec,
    OutputSpec as OutputSpec,
    ParamSpec as ParamSpec,
    StateSpec as StateSpec,
    build_model as build_model,
    residual_parameter_name as residual_parameter_name,
)
from ._hash import model_hash as model_hash
