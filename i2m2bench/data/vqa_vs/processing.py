"""What VQA-VS's real features and the embedded scene world share: the task spec (soft
scores over an answer vocabulary; image, text and joint feature modalities) and the nine OOD sets."""
from __future__ import annotations

from i2m2bench.types import ModalitySpec, TaskSpec

OOD_SETS = ("QT", "KW", "KWP", "QT+KW", "KO", "KOP", "QT+KO", "KW+KO", "QT+KW+KO")


def task_spec(source: str, dims: tuple[int, int, int], answers: tuple[str, ...],
              description: str = "", name: str = "vqa_vs") -> TaskSpec:
    """The TaskSpec: ``dims`` = (image, text, joint) feature sizes, ``answers`` the vocabulary."""
    d_image, d_text, d_joint = dims
    return TaskSpec(
        name=name, version="1", problem="soft-score", num_classes=len(answers), labels=answers,
        metric="vqa_score", source=source, description=description,
        modalities=(ModalitySpec("image", (d_image,), "vector", "identity"),
                    ModalitySpec("text", (d_text,), "vector", "identity"),
                    ModalitySpec("joint", (d_joint,), "vector", "identity",
                                 derived_from=("image", "text"))))


__all__ = ["OOD_SETS", "task_spec"]
