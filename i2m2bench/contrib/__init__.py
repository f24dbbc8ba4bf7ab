"""Fusion methods written only against the public API (``import i2m2bench``), as a user would.

They use nothing a plugin package could not use — :class:`i2m2bench.Fusion`, ``FUSIONS``,
``build_encoder``, ``Batch``, ``TaskSpec`` — and so double as worked examples of
``docs/extending/adding_a_fusion.md``. Each is usable alone and as I2M2's inter expert
(``method.options = {'inter': 'tfn', ...}``).
"""
from i2m2bench.contrib import gmu, tfn  # noqa: F401  (registers the strategies)
