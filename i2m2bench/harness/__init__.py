"""Harness: settings (config, ginfiles), units and recipes, the training loop, protocols, the
result store and the runner that orchestrates them."""
from i2m2bench.harness.config import MethodConfig, SuiteConfig, TrainConfig
from i2m2bench.harness.errors import ConfigError, UnitFailed
from i2m2bench.harness.recipes import RECIPES, Recipe
from i2m2bench.harness.runner import run_suite

__all__ = ["RECIPES", "ConfigError", "MethodConfig", "Recipe", "SuiteConfig", "TrainConfig",
           "UnitFailed", "run_suite"]
