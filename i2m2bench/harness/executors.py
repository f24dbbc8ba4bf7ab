"""Executors: who brings the units of a planned suite about. One interface, two engines.

- ``in-process`` (default): the units in plan order in this process (dependencies first). Under
  ``torchrun`` the same executor trains each unit data-parallel over the ranks
  (:mod:`i2m2bench.harness.distributed`).
- ``ray``: every unit that needs work is a Ray task (``ray.remote``) with its resource needs
  (``cpus_per_unit``, ``gpus_per_unit``; default one GPU per unit when the suite runs on CUDA).
  A unit's dependencies (I2M2 after its experts) are passed as the Ray object refs of their
  tasks, so Ray schedules it after them; sweep settings and seeds are independent. Each worker
  parses the same gin files, builds the setting's task (once per worker process) and runs the
  very code of the in-process executor (:meth:`SuiteRun.run_item`: the unit lock, checkpoint,
  predictions and ``metrics.json`` in the run folder, which must be on storage every node shares),
  but hands its result rows back: the driver writes them through the same store, in plan order,
  so resume, healing and boards work unchanged. A worker sets its torch threads to its CPU share
  (``numerics`` records them). Ray is the optional extra ``i2m2bench[ray]``; without an address a
  local instance is started (or the one this process already started is used).

The engine is Ray's: this module schedules nothing itself.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Callable

import torch

from i2m2bench.harness import distributed
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.seeding import resolve_device

EXECUTORS = ("in-process", "ray")


class InProcess:
    """The units in plan order, in this process (each data-parallel under torchrun)."""

    name = "in-process"

    @staticmethod
    def driver_device(device: str | None) -> torch.device:
        return resolve_device(device)

    @staticmethod
    def execute(runs: list, progress, job: dict, planner: Callable) -> None:
        for run in runs:
            run.execute(progress)


class RayExecutor:
    """Units as Ray tasks; rows written by the driver (this process)."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_unit: int = 1,
                 gpus_per_unit: float | None = None) -> None:
        if distributed.env_world_size() > 1:
            raise ConfigError("--executor ray spreads units over a Ray cluster; torchrun spreads one "
                              "unit over processes: use one or the other")
        if not isinstance(cpus_per_unit, int) or isinstance(cpus_per_unit, bool) or cpus_per_unit < 1:
            raise ConfigError(f"--ray-cpus-per-unit must be a whole number >= 1; got {cpus_per_unit!r}")
        if gpus_per_unit is not None and not (isinstance(gpus_per_unit, (int, float))
                                              and gpus_per_unit >= 0):
            raise ConfigError(f"--ray-gpus-per-unit must be a number >= 0; got {gpus_per_unit!r}")
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--executor ray needs Ray: pip install 'i2m2bench[ray]'") from exc
        if address not in (None, "", "local", "auto"):
            check_reachable(address)  # before any data is built
        self.address, self.cpus, self.gpus = address, cpus_per_unit, gpus_per_unit
        self.cuda = False

    def driver_device(self, device: str | None) -> torch.device:
        """The device the driver validates on: the one asked for, or the CPU when the driver
        has no GPU but the workers will (``--device cuda`` from a CPU-only head node)."""
        if device not in (None, "", "auto") and torch.device(device).type == "cuda" \
                and not torch.cuda.is_available():
            self.cuda = True
            return torch.device("cpu")
        dev = resolve_device(device)
        self.cuda = dev.type == "cuda"
        return dev

    def connect(self) -> None:
        """Join the cluster at ``address`` (checked first: a clear error when nothing answers),
        or start a local instance; a Ray this process already started is used as it is."""
        import ray

        if ray.is_initialized():
            return
        try:
            ray.init(address=self.address or None, log_to_driver=False, include_dashboard=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {self.address!r}" if self.address else "locally"
            raise ConfigError(f"--ray-address {self.address}: cannot start or join a Ray cluster "
                              f"{where} ({type(exc).__name__}: {exc})") from exc

    def execute(self, runs: list, progress, job: dict, planner: Callable) -> None:
        """``job``: the arguments each worker plans the suite from with ``planner``
        (:func:`i2m2bench.harness.runner.plan_suite`)."""
        import ray

        self.connect()
        gpus = self.gpus if self.gpus is not None else (1 if self.cuda else 0)
        remote = ray.remote(_ray_unit).options(num_cpus=self.cpus, num_gpus=gpus, max_retries=0)
        job = {**job, "threads": self.cpus}
        refs: dict[tuple, object] = {}
        queue: list[tuple] = []  # (run, item, ref or None), plan order
        by_setting = {run.setting: run for run in runs}
        for run in runs:
            for item in run.plan:
                u = item.unit
                if item.action == "skip":
                    queue.append((run, item, None))
                    continue
                deps = [refs[run.setting, d.method, d.seed] for d in u.deps.values()
                        if (run.setting, d.method, d.seed) in refs]
                ref = remote.remote(planner, job, run.setting, u.method, u.seed, *deps)
                refs[run.setting, u.method, u.seed] = ref
                queue.append((run, item, ref))
        try:
            for run, item, ref in queue:  # results written in plan order, as they arrive
                if ref is None:
                    run.run_item(item)  # done already: healed here, from its metrics.json
                    continue
                progress.begin(f"{run.where(item.unit)}: on a Ray worker")
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                finally:
                    progress.end()
                _collect(by_setting[result["setting"]], item, result)
        except BaseException:
            for ref in refs.values():  # the rest of the suite is not wanted any more
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - a task that ended meanwhile
                    pass
            raise


def _collect(run, item, result: dict) -> None:
    """Write one worker's result through the driver's store and log."""
    for line in result["log"]:
        run.log(line)
    for rec, prov, replace, label in result["records"]:
        run.write_record(rec, prov, replace, label)
    if result["action"] == "skip":
        run._heal(item.unit)  # another run completed it meanwhile
    if result["action"] != item.action:
        i = run.plan.index(item)
        run.plan[i] = type(item)(item.setting, item.unit, result["action"], item.run_dir)
    run.summary += result["summary"]
    run.failures += result["failures"]
    run.repairs += result["repairs"]
    if result["error"] is not None:
        run._failed[item.unit.method, item.unit.seed] = result["error"]


# ----------------------------------------------------------------------------- the Ray worker
_PLANS: dict[str, dict] = {}  # one planned suite per worker process (job key -> setting -> run)


def _worker_runs(planner: Callable, job: dict) -> dict:
    key = json.dumps(job, sort_keys=True, default=str)
    if key not in _PLANS:
        _PLANS.clear()
        torch.set_num_threads(job["threads"])
        plan = planner(job["gin_files"], job["bindings"], methods=job["methods"],
                          seeds=job["seeds"], data_root=job["data_root"],
                          device=resolve_device(job["device"]), out=job["out"],
                          results_dir=job["results_dir"], force=job["force"], progress=False,
                          tensorboard=None if job["tensorboard"] is None else Path(job["tensorboard"]))
        _PLANS[key] = {run.setting: run for run in plan.runs}
    return _PLANS[key]


def _ray_unit(planner: Callable, job: dict, setting: str | None, method: str, seed: int,
              *deps: dict) -> dict:
    """One unit on a Ray worker: :meth:`SuiteRun.run_item` with its records collected, not
    written; ``deps``: the results of its dependencies' tasks (a failed expert fails it)."""
    run = _worker_runs(planner, job)[setting]
    lines: list[str] = []
    run.log = lines.append
    run.pending, run.summary, run.failures, run.repairs = [], [], [], []
    run._failed = {(d["method"], d["seed"]): d["error"] for d in deps if d["error"] is not None}
    item = next(it for it in run.plan if it.unit.method == method and it.unit.seed == seed)
    t0 = time.perf_counter()
    action = run.run_item(item)
    lines.append(f"[i2m2bench] {run.where(item.unit)}: {action} on a Ray worker "
                 f"({time.perf_counter() - t0:.1f}s, {torch.get_num_threads()} threads)")
    return {"setting": setting, "method": method, "seed": seed, "action": action,
            "records": run.pending, "summary": run.summary, "failures": run.failures,
            "repairs": run.repairs, "log": lines, "error": run._failed.get((method, seed))}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A clear :class:`ConfigError` when nothing answers at a Ray ``host:port`` address (a
    ``ray://`` client address is checked the same way)."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379, "
                          "the address `ray start --head` prints) or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: nothing answers at {host}:{port} "
                          f"({exc.strerror or exc}); start the cluster with `ray start --head` "
                          "there, or leave --ray-address out for a local instance") from exc


def make_executor(name: str, *, ray_address: str | None = None, cpus_per_unit: int = 1,
                  gpus_per_unit: float | None = None):
    """The executor called ``name`` (:data:`EXECUTORS`); Ray options only apply to ``ray``."""
    if name == "in-process":
        if ray_address is not None:
            raise ConfigError("--ray-address applies to --executor ray")
        return InProcess()
    if name == "ray":
        return RayExecutor(ray_address, cpus_per_unit, gpus_per_unit)
    raise ConfigError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "InProcess", "RayExecutor", "check_reachable", "make_executor"]
