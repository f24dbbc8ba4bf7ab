"""Example i2m2bench plugin. Importing it (i2m2bench does, through the ``i2m2bench.plugins``
entry point) registers the ``film`` fusion strategy."""
from i2m2bench_example_plugin.film import FiLMFusion

__all__ = ["FiLMFusion"]
