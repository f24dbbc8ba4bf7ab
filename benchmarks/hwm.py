"""``python benchmarks/hwm.py OUT -m MODULE ARGS...``: run ``python -m MODULE ARGS...`` in this
process and, at exit, write its peak resident set (``VmHWM`` of ``/proc/self/status``, kB) to
``OUT``.

Why not ``wait4``'s ``ru_maxrss``: on Linux a child's ``ru_maxrss`` starts from its parent's
resident set at the fork (``exec`` folds the old address space's high-water mark into the
process's maximum), so a command started from a benchmark process holding gigabytes reports
those gigabytes as its own. ``VmHWM`` is the high-water mark of the address space ``exec``
created: the command's own."""
import atexit
import runpy
import sys


def _report(out: str) -> None:
    with open("/proc/self/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    with open(out, "w") as fh:
        fh.write(f"{kb}\n")


def main() -> None:
    out, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: hwm.py OUT -m MODULE [ARGS...]")
    atexit.register(_report, out)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
