"""i2m2bench: a benchmark suite for supervised multimodal learning built around I2M2.

I2M2 (Madaan, Makino, Chopra, Cho, NeurIPS 2024) predicts with the normalised product of one
classifier per modality (intra-modality experts) and one over all modalities (the inter expert).

Python API (mirrors the CLI)::

    import i2m2bench
    task = i2m2bench.build_task("avmnist", source="embedded")
    task.spec, task.splits["train"], len(task.splits["test"])
    run = i2m2bench.run_suite(["gin/avmnist_smoke.gin"], seeds=[0])
"""
from i2m2bench._version import __version__  # noqa: E402

from i2m2bench.registry import load_plugins  # noqa: E402
from i2m2bench.types import Batch, ModalitySpec, Split, Task, TaskSpec  # noqa: E402
from i2m2bench.data import DATASETS, build_task  # noqa: E402
from i2m2bench.encoders import ENCODERS, Encoder, build_encoder  # noqa: E402
from i2m2bench.fusion import FUSIONS, Fusion, build_fusion  # noqa: E402
from i2m2bench.harness import RECIPES, run_suite  # noqa: E402
from i2m2bench.metrics import METRICS  # noqa: E402
from i2m2bench.perturbations import PERTURBATIONS, perturbation  # noqa: E402

__all__ = ["DATASETS", "ENCODERS", "FUSIONS", "METRICS", "PERTURBATIONS", "RECIPES", "Batch",
           "Encoder", "Fusion", "ModalitySpec", "Split", "Task", "TaskSpec", "build_encoder",
           "build_fusion", "build_task", "perturbation", "run_suite", "load_plugins", "__version__"]
