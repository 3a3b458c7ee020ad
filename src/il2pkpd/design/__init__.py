"""Study design: virtual trials, dose-finding sweeps and their decision metrics."""

from . import designs as designs
from .trial import Arm as Arm, Sample as Sample, TrialDesign as TrialDesign, simulate_trial as simulate_trial
from .metrics import Metric as Metric, Target as Target, parse_metric as parse_metric, parse_target as parse_target
from .sweep_design import Cell as Cell, SweepDesign as SweepDesign, design_from_toml as design_from_toml, regimens_from_flags as regimens_from_flags
from .optimize import RegimenOptimum as RegimenOptimum, optimize_regimen as optimize_regimen
from .power import PowerResult as PowerResult, trial_power as trial_power
