"""Study design: virtual trials (and, to come, sweeps and dose finding)."""

from . import designs as designs
from .trial import Arm as Arm, Sample as Sample, TrialDesign as TrialDesign, simulate_trial as simulate_trial
