"""Errors the harness raises; the CLI turns each into one line and an exit code."""
from __future__ import annotations


class ConfigError(Exception):
    """A gin file, binding or suite definition that cannot be used; the message says where."""


class UnitFailed(RuntimeError):
    """A unit could not finish (NaN loss, or an expert it starts from failed); others go on."""
