"""Executors: who brings the units of a planned suite about. One interface, two engines.

- ``in-process`` (default): the units in plan order in this process (dependencies first). Under
  ``torchrun`` the same executor trains each unit data-parallel over the ranks
  (:mod:`i2m2bench.harness.distributed`).
- ``ray``: every unit that needs work is a Ray task (``ray.remote``) with its resource needs
  (``cpus_per_unit``, ``gpus_per_unit``; default one GPU per unit when the suite runs on CUDA).
  A unit's dependencies (I2M2 after its experts) are passed as the Ray object refs of their
  tasks, so Ray schedules it after them; sweep settings and seeds are independent. Each worker
  parses the same gin files, builds the setting's task (once per worker process) and runs the
  very code of the in-process executor (:meth:`SuiteRun.run_unit`: the unit lock, checkpoint,
  predictions and ``metrics.json`` in the run folder, which must be on storage every node shares),
  deferred: its :class:`~i2m2bench.harness.unit_runner.UnitResult` carries the result rows back,
  and the driver collects them (:meth:`SuiteRun.collect`) through the same store, in plan order,
  so resume, healing and boards work unchanged. A worker sets its torch threads to its CPU share
  (``numerics`` records them). Ray is the optional extra ``i2m2bench[ray]``; without an address a
  local instance is started (or the one this process already started is used).

  The driver ships each ``--gin`` argument as a worker can find it, in whatever folder it runs:
  an installed suite by its name (the worker reads its own installed copy), any other file by
  its absolute path. Before anything is submitted, the CPUs and GPUs a unit asks for are
  compared with the largest node of the cluster: a request no node can meet (Ray would queue
  the task for ever) is refused, naming the option. A unit that raises on a worker stops the
  suite, as in-process, with one line naming the unit and the worker's error (its traceback
  with ``--debug``).

Every executor uses the same two methods of a run (``SuiteRun``): ``run_unit(item) ->
UnitResult`` and ``collect(item, result)``; the torchrun rank logic (rank 0 locks, decides and
writes; every rank trains) lives in ``run_unit``. The engine is Ray's: this module schedules
nothing itself.
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
from i2m2bench.harness.ginfiles import resolve_gin_file, suites_dir
from i2m2bench.harness.seeding import resolve_device

EXECUTORS = ("in-process", "ray")


class WorkerFailed(RuntimeError):
    """A unit raised on a Ray worker (an error other than a :class:`ConfigError`); the message
    names the unit and the error in one line, the worker's traceback is its ``__cause__``."""


class InProcess:
    """The units in plan order, in this process (each data-parallel under torchrun)."""

    name = "in-process"

    @staticmethod
    def driver_device(device: str | None) -> torch.device:
        return resolve_device(device)

    @staticmethod
    def execute(runs: list, progress, job: dict, planner: Callable) -> None:
        """Each unit of each run's plan in turn: ``run.collect(item, run.run_unit(item))``."""
        for run in runs:
            for item in list(run.plan):
                run.collect(item, run.run_unit(item, progress))


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
        (:func:`i2m2bench.harness.runner.plan_runs`)."""
        import ray

        self.connect()
        gpus = self.gpus if self.gpus is not None else (1 if self.cuda else 0)
        if any(item.action != "skip" for run in runs for item in run.plan):
            self.check_resources(gpus)
        remote = ray.remote(_ray_unit).options(num_cpus=self.cpus, num_gpus=gpus, max_retries=0)
        job = {**job, "threads": self.cpus,
               "gin_files": [portable_gin_file(f) for f in job["gin_files"]]}
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
        done: set = set()  # refs whose task has ended (result or error in hand)
        try:
            for run, item, ref in queue:  # results written in plan order, as they arrive
                if ref is None:  # done already: healed here, from its metrics.json
                    run.collect(item, run.run_unit(item))
                    continue
                progress.begin(f"{run.where(item.unit)}: on a Ray worker")
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker's traceback: --debug
                    raise worker_error(run.where(item.unit), exc) from exc
                finally:
                    done.add(ref)
                    progress.end()
                by_setting[result.setting].collect(item, result)
        except BaseException:
            cancel_unfinished([ref for ref in refs.values() if ref not in done])
            raise

    def check_resources(self, gpus: float) -> None:
        """Refuse (:class:`ConfigError`) CPUs or GPUs per unit that no live node of the cluster
        has: Ray would keep such a task waiting, silently, for a node that never comes."""
        import ray

        nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
        asks = [("--ray-cpus-per-unit", self.cpus, "CPU", "CPUs", "")]
        if gpus:
            asks.append(("--ray-gpus-per-unit", gpus, "GPU", "GPUs", "") if self.gpus is not None
                        else ("--device cuda", gpus, "GPU", "GPUs",
                              " (one GPU per unit unless --ray-gpus-per-unit says less)"))
        for flag, asked, key, noun, why in asks:
            most = max((float(n.get(key, 0)) for n in nodes), default=0.0)
            if asked <= most:
                continue
            all_ = float(total.get(key, 0))
            has = (f"has no {noun}" if not all_ else f"has {all_:g} {noun}" if all_ == most else
                   f"has {all_:g} {noun} in all, at most {most:g} on one node")
            hint = (f"ask for at most {most:g}" if most else
                    f"leave {flag} out" if key == "GPU" else "start the cluster with CPUs")
            need = f"{asked:g} {key if asked == 1 else noun}"
            raise ConfigError(f"{flag} {asked:g}{why}: a unit needs {need} on one node, "
                              f"and the Ray cluster ({self.address or 'local'}) {has}; {hint}, "
                              "or join a bigger cluster with --ray-address")


def cancel_unfinished(refs: list) -> None:
    """Cancel the tasks of ``refs`` that have not ended yet: the rest of a suite no longer
    wanted. Not forced (a running unit gets a KeyboardInterrupt; its worker process stays), and
    a task that has ended is left alone: force-cancelling a task whose reply is in flight trips
    a check in Ray's core worker ("Tried to complete task that was not pending", seen on CI with
    Ray 2.60), which ends the driver with exit 1 after the one-line error was printed. A local
    cluster ends with the driver anyway."""
    import ray

    if not refs:
        return
    _, running = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    for ref in running:
        try:
            ray.cancel(ref, force=False)
        except Exception:  # noqa: BLE001 - a task that ended meanwhile
            pass


def portable_gin_file(f: str | Path) -> str:
    """A ``--gin`` argument as a Ray worker finds it, in whatever folder it runs: the name of
    an installed suite (the worker reads its own installed copy), else the absolute path."""
    path = resolve_gin_file(f)  # ConfigError when it names nothing
    return path.name if path.parent == suites_dir().resolve() else str(path)


def _worker_gin_file(name: str) -> str:
    """The file a worker reads for an entry of :func:`portable_gin_file`."""
    return name if Path(name).is_absolute() else str(suites_dir() / name)


def _one_line(text: str, limit: int = 600) -> str:
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[:limit] + " ... (--debug shows all of it)"


def worker_error(where: str, exc: Exception) -> Exception:
    """The error a driver raises for unit ``where`` when its Ray task failed with ``exc``: one
    line naming the unit and the worker's error (a :class:`ConfigError` stays one), no traceback."""
    import ray

    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    if isinstance(cause, ConfigError):
        return ConfigError(f"unit {where} (on a Ray worker): {_one_line(cause)}")
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
        return WorkerFailed(f"unit {where} failed on a Ray worker: {type(cause).__name__}: "
                            f"{_one_line(cause)}")
    first = next((s for s in str(exc).splitlines() if s.strip()), "")
    return WorkerFailed(f"unit {where}: its Ray worker failed ({type(exc).__name__}: "
                        f"{_one_line(first)})")


# ----------------------------------------------------------------------------- the Ray worker
_PLANS: dict[str, dict] = {}  # one planned suite per worker process (job key -> setting -> run)


def _worker_runs(planner: Callable, job: dict) -> dict:
    key = json.dumps(job, sort_keys=True, default=str)
    if key not in _PLANS:
        _PLANS.clear()
        torch.set_num_threads(job["threads"])
        _, runs = planner([_worker_gin_file(f) for f in job["gin_files"]], job["bindings"],
                          methods=job["methods"], seeds=job["seeds"], data_root=job["data_root"],
                          device=resolve_device(job["device"]), out=job["out"],
                          results_dir=job["results_dir"], force=job["force"], progress=False,
                          tensorboard=None if job["tensorboard"] is None else Path(job["tensorboard"]))
        _PLANS[key] = {run.setting: run for run in runs}
    return _PLANS[key]


def _ray_unit(planner: Callable, job: dict, setting: str | None, method: str, seed: int,
              *deps):
    """One unit on a Ray worker: ``run_unit`` deferred (its records and lines are the driver's
    to write and show); ``deps``: the results of its dependencies' tasks (a failed expert fails
    it). Returns its ``UnitResult``."""
    run = _worker_runs(planner, job)[setting]
    failed = {(d.method, d.seed): d.error for d in deps if d.error is not None}
    item = run.item(method, seed)
    t0 = time.perf_counter()
    result = run.run_unit(item, failed=failed, deferred=True)
    result.log.append(f"[i2m2bench] {run.where(item.unit)}: {result.action} on a Ray worker "
                      f"({time.perf_counter() - t0:.1f}s, {torch.get_num_threads()} threads)")
    return result


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


__all__ = ["EXECUTORS", "InProcess", "RayExecutor", "WorkerFailed", "check_reachable",
           "make_executor", "portable_gin_file", "worker_error"]
