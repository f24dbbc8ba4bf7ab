"""What NLVR2's real features and the embedded pair world share: the task spec (True/False
over an image pair and a sentence; image-pair, text and joint feature modalities)."""
from __future__ import annotations

from i2m2bench.types import ModalitySpec, TaskSpec

LABELS = ("False", "True")


def task_spec(source: str, dims: tuple[int, int, int], description: str = "") -> TaskSpec:
    """The NLVR2 TaskSpec: ``dims`` = (image pair, text, joint) feature sizes."""
    d_image, d_text, d_joint = dims
    return TaskSpec(
        name="nlvr2", version="1", problem="multiclass", num_classes=2, labels=LABELS,
        metric="accuracy", metrics=("consistency",), source=source, description=description,
        modalities=(ModalitySpec("image", (d_image,), "vector", "identity"),
                    ModalitySpec("text", (d_text,), "vector", "identity"),
                    ModalitySpec("joint", (d_joint,), "vector", "identity",
                                 derived_from=("image", "text"))))


__all__ = ["LABELS", "task_spec"]
