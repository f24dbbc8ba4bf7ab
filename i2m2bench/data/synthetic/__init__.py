"""The generated (synthetic) tasks: no real counterpart, so only the builder role applies.

* :mod:`~i2m2bench.data.synthetic.spectrum` -- the dependency spectrum (``spectrum``): a task
  whose inter-/intra-modality dependency share is a knob, with its exact Bayes ceiling;
* :mod:`~i2m2bench.data.synthetic.toy` -- the toy tasks (``toy``, ``toy_multilabel``,
  ``toy_soft``) used by the smoke suites and tests;
* :mod:`~i2m2bench.data.synthetic.toy_kinds` -- ``toy_kinds``: one modality of every kind.

Importing this package registers them in ``DATASETS``; each module defines its spec and builder.
"""
from __future__ import annotations

from i2m2bench.data.synthetic import spectrum, toy, toy_kinds  # noqa: F401  (registration)

__all__ = ["spectrum", "toy", "toy_kinds"]
