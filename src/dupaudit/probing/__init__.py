"""`dupaudit probe`: what the duplicates cost in accuracy and training time (standard and adversarial).

The only package that imports torch, and only inside the functions that train: importing `dupaudit.probing`
does not load torch. `run_probe` raises MissingExtraError when torch is absent.
"""

from __future__ import annotations

from .config import ARMS, HYPERPARAMETERS, ProbeSettings
from .experiment import require_torch, run_probe
from .results import ArmSummary, ClassDelta, Comparison, Condition, DataInfo, ProbeReport, RunResult, render_json
from .stats import Interval, mean_interval, paired_difference

__all__ = [
    "ARMS",
    "HYPERPARAMETERS",
    "ProbeSettings",
    "run_probe",
    "require_torch",
    "ProbeReport",
    "Condition",
    "ArmSummary",
    "Comparison",
    "ClassDelta",
    "DataInfo",
    "RunResult",
    "Interval",
    "mean_interval",
    "paired_difference",
    "render_json",
]
