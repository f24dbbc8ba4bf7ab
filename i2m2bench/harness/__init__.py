"""Harness: seeding, training loop, recipes, result store and the suite runner."""
from i2m2bench.harness.runner import RECIPES, ConfigError, run_suite
from i2m2bench.harness.seeding import resolve_device, seed_everything
from i2m2bench.harness.training import TrainConfig

__all__ = ["RECIPES", "ConfigError", "run_suite", "resolve_device", "seed_everything", "TrainConfig"]
