"""i2m2bench: a benchmark suite for supervised multimodal learning built around I2M2.

I2M2 (Madaan, Makino, Chopra, Cho, NeurIPS 2024) predicts with the normalised product of one
classifier per modality (intra-modality experts) and one over all modalities (the inter expert).

Python API (mirrors the CLI)::

    import i2m2bench
    task = i2m2bench.build_task("avmnist", source="embedded")
    task.spec, task.splits["train"], len(task.splits["test"])
    run = i2m2bench.run_suite(["gin/avmnist_smoke.gin"], seeds=[0])

The names below are loaded on first use (PEP 562), so that importing one layer of the package
(``import i2m2bench.poe``, ``import i2m2bench.types``) never loads the layers above it: the
harness and gin come in only with ``run_suite``, ``RECIPES`` or ``i2m2bench.harness``.
"""
from __future__ import annotations

from importlib import import_module

from i2m2bench._version import __version__

# public name -> the module that defines it (imported on first access)
_EXPORTS = {
    "load_plugins": "i2m2bench.registry",
    "Batch": "i2m2bench.types", "ModalitySpec": "i2m2bench.types", "Split": "i2m2bench.types",
    "Task": "i2m2bench.types", "TaskSpec": "i2m2bench.types",
    "DATASETS": "i2m2bench.data", "build_task": "i2m2bench.data",
    "ENCODERS": "i2m2bench.encoders", "Encoder": "i2m2bench.encoders",
    "build_encoder": "i2m2bench.encoders",
    "FUSIONS": "i2m2bench.fusion", "Fusion": "i2m2bench.fusion", "build_fusion": "i2m2bench.fusion",
    "RECIPES": "i2m2bench.harness", "run_suite": "i2m2bench.harness",
    "METRICS": "i2m2bench.metrics",
    "PERTURBATIONS": "i2m2bench.perturbations", "perturbation": "i2m2bench.perturbations",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    """Import the module behind a public name the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'i2m2bench' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
