"""Data sets with known truth: simulators, and small real data shipped in the package."""

from mathkit.data.conveyor import ASPECT, DEFECT_KINDS, ConveyorImages, simulate_conveyor
from mathkit.data.demand import DemandData, simulate_demand
from mathkit.data.flu import BoardingSchoolFlu, boarding_school_flu
from mathkit.data.learners import LearnerPopulation, published_success_rate, simulate_learners
from mathkit.data.toy import SmoothRegression, simulate_smooth_regression, smooth_function

__all__ = [
    "ASPECT",
    "DEFECT_KINDS",
    "ConveyorImages",
    "simulate_conveyor",
    "DemandData",
    "simulate_demand",
    "BoardingSchoolFlu",
    "boarding_school_flu",
    "LearnerPopulation",
    "published_success_rate",
    "simulate_learners",
    "SmoothRegression",
    "simulate_smooth_regression",
    "smooth_function",
]
