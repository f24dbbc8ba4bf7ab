"""Devices: the ones this machine has (:func:`available_devices`) and the check of a
``--device`` / ``run_suite(device=...)`` argument (:func:`check_device`)."""
from __future__ import annotations

from i2m2bench.harness.errors import ConfigError


def available_devices() -> list[str]:
    """The devices this machine has, as ``--device`` takes them: ``cpu``, then ``cuda:N (name)``
    for each GPU, ``mps`` and ``xpu:N`` where available."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        out += [f"xpu:{i}" for i in range(xpu.device_count())]
    return out


def check_device(device, what: str = "--device") -> None:
    """``device`` (None, ``''`` or ``'auto'``: CUDA when available, else CPU, as
    :func:`i2m2bench.harness.seeding.resolve_device` takes them) names a device this machine
    has: ``cpu``, ``cuda`` / ``cuda:N`` (N below the GPU count), ``mps`` or ``xpu`` when
    available. Otherwise one ConfigError line listing what the machine has."""
    if device is None or device in ("", "auto"):
        return
    import torch

    have = available_devices()
    listed = f"; available: {', '.join(have)}"
    if not isinstance(device, (str, torch.device)) or not str(device).strip():
        raise ConfigError(f"{what} {device!r}: not a device name{listed}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{what} {device}: unknown device type{listed}") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {device}: CUDA is not available on this machine{listed}")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{what} {device}: this machine has {count} CUDA device(s){listed}")
        return
    if dev.type == "mps" and "mps" in have:
        return
    if dev.type == "xpu" and any(d.startswith("xpu") for d in have):
        count = sum(d.startswith("xpu") for d in have)
        if dev.index is None or dev.index < count:
            return
    raise ConfigError(f"{what} {device}: not a device to train on, on this machine{listed}")
