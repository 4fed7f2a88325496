"""The deterministic simulator: ``python -m rantai.consensus.sim --seeds 1000 --nodes 4 --faults all``."""

from .checkers import Checker, Violation
from .cluster import ALL_FAULTS, BYZANTINE, CachingVerifier, Result, Simulation, run_seed

__all__ = ["ALL_FAULTS", "BYZANTINE", "CachingVerifier", "Checker", "Result", "Simulation", "Violation", "run_seed"]
