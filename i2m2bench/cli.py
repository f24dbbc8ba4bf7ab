"""Command line: ``python -m i2m2bench run|list|leaderboard|compare|prepare|bench|site``.

Errors are one clear message with a non-zero exit code (``--debug``: the traceback). ``run``
checks its arguments before reading any gin file (:func:`~i2m2bench.harness.checks.check_run_arguments`).
``bench --quick`` writes to :data:`i2m2bench.bench.QUICK_DIR` unless ``--leaderboard-dir`` is given.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """examples:
  python -m i2m2bench run --gin gin/avmnist.gin                 # every method, 3 seeds
  python -m i2m2bench run --gin gin/avmnist_smoke.gin --out /tmp/runs
  python -m i2m2bench run --gin gin/avmnist.gin --methods i2m2_lf --seeds 0 \\
      --gin-param "i2m2_lf/train.lr = 0.005"
  python -m i2m2bench run --gin gin/avmnist.gin --data-root ~/data   # real AV-MNIST
  python -m i2m2bench list
  python -m i2m2bench leaderboard --check
  python -m i2m2bench compare leaderboards my_leaderboards       # your run vs the committed board
  python -m i2m2bench prepare fastmri --data-root ~/data        # once: the real FastMRI cache
  python -m i2m2bench prepare mimic --data-root ~/data          # once: mimic/im.pk -> mimic.npz
  python -m i2m2bench prepare vqa-vs --backbone ~/flava --data-root ~/data   # once: features
  python -m i2m2bench verify fastmri --level full --data-root ~/data   # check the files, every byte
  python -m i2m2bench bench                                     # PoE kernel throughput table
  torchrun --nproc-per-node 2 -m i2m2bench run --gin gin/fastmri.gin   # each unit on 2 GPUs (DDP)
  python -m i2m2bench run --gin gin/avmnist.gin --executor ray  # units as Ray tasks
"""


def _cmd_run(args) -> int:
    from i2m2bench.harness import distributed
    from i2m2bench.harness.checks import CLI_NAMES, check_run_arguments
    from i2m2bench.harness.runner import run_suite

    check_run_arguments(args.gin, args.methods, args.seeds, data_root=args.data_root, out=args.out,
                        results_dir=args.leaderboard_dir, device=args.device, names=CLI_NAMES)
    if not args.allow_dirty and not args.dry_run:  # before any gin file is read or unit trained
        from i2m2bench.harness.store.provenance import dirty_tree_problem

        problem = dirty_tree_problem(args.leaderboard_dir)
        if problem:
            raise ValueError(problem)
    try:
        run = run_suite(args.gin, args.gin_param, methods=args.methods, seeds=args.seeds,
                        data_root=args.data_root, device=args.device, out=args.out,
                        results_dir=args.leaderboard_dir, force=args.force,
                        progress=not args.no_progress, dry_run=args.dry_run,
                        tensorboard=args.tensorboard, executor=args.executor,
                        ray_address=args.ray_address, ray_cpus_per_unit=args.ray_cpus_per_unit,
                        ray_gpus_per_unit=args.ray_gpus_per_unit)
        main = distributed.is_main()
    finally:
        distributed.shutdown()
    if not main:  # rank 0 reports for the group
        return 3 if run.failures else 0
    if args.dry_run:
        return _print_plan(run)
    if not run.summary and not run.failures:
        print("nothing to train: every unit was complete (use --force to retrain)")
    _print_summary(run)
    if run.failures:
        print(f"{len(run.failures)} unit(s) FAILED (recorded; rerun the same command to retry):",
              file=sys.stderr)
        for f in run.failures:
            print(f"  {f}", file=sys.stderr)
        return 3
    return 0


def _print_plan(run) -> int:
    """``run --dry-run``: what a run would do with each unit; nothing was trained or written."""
    from tabulate import tabulate

    verbs = {"train": "train", "evaluate": "re-evaluate (new protocols, or metrics.json unreadable)", "skip": "skip (done)"}
    sweep = any(item.setting is not None for item in run.plan)
    body = [[verbs[item.action], *([item.setting] if sweep else []), item.unit.key,
             item.unit.unit_hash, ", ".join(f"{s} <- {d.key}" for s, d in item.unit.deps.items()),
             str(item.run_dir)] for item in run.plan]
    heads = ["action", *(["setting"] if sweep else []), "unit", "unit hash", "starts from", "run dir"]
    print(tabulate(body, headers=heads, tablefmt="simple", disable_numparse=True))
    counts = {a: sum(1 for item in run.plan if item.action == a) for a in verbs}
    print(f"dry run: {counts['train']} to train, {counts['evaluate']} to re-evaluate, "
          f"{counts['skip']} done already; nothing was trained or written")
    return 0


def _print_summary(run) -> None:
    """The board's numbers (method x protocol, mean ± std over seeds) on the console."""
    from i2m2bench.harness import store
    from i2m2bench.reporting import summary_table

    rows = store.read_rows(run.results_path, report=store.quiet)  # damaged lines: reported already
    if rows:
        repaired = sum("repaired" in s for s in run.summary)
        done = len(run.summary) - repaired
        print(f"{done} unit(s) trained or evaluated now"
              + (f", {repaired} repaired in the results file" if repaired else "")
              + f"; board {run.results_path.stem} (mean ± std over seeds, %):")
        print(summary_table(rows))


def _cmd_list(args) -> int:
    import textwrap

    import i2m2bench
    from i2m2bench.data import FAMILIES
    from i2m2bench.harness.official import OFFICIAL  # (registers the official scorers too)
    from i2m2bench.metrics import METRICS
    from i2m2bench.reporting import LAYOUTS

    kinds = {"datasets": i2m2bench.DATASETS, "encoders": i2m2bench.ENCODERS,
             "fusions": i2m2bench.FUSIONS, "perturbations": i2m2bench.PERTURBATIONS,
             "recipes": i2m2bench.RECIPES, "metrics": METRICS, "layouts": LAYOUTS,
             "families": FAMILIES, "official": OFFICIAL}
    for kind, reg in kinds.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{kind}:")
        for name in reg.names():
            print(f"  {name:<20} {reg.origin(name)}")
    if args.kind in (None, "suites"):
        from i2m2bench.harness.ginfiles import installed_suites
        from i2m2bench.harness.ginfiles import suites_dir

        print(f"suites (installed in {suites_dir()}; run one with --gin NAME.gin, or "
              "`include 'NAME.gin'` it from your own gin file):")
        for s in installed_suites():
            file = s["file"].relative_to(suites_dir())
            if s["error"]:
                print(f"  {s['name']:<26} {file}: cannot be parsed: {s['error']}")
                continue
            print(f"  {s['name']:<26} {file}, dataset {s['dataset']}, {len(s['methods'])} methods:")
            print(textwrap.fill(", ".join(s["methods"]), width=100, initial_indent=" " * 4,
                                subsequent_indent=" " * 4, break_on_hyphens=False))
    return 0


def _cmd_leaderboard(args) -> int:
    from i2m2bench.bench import json_path, render_poe_file, stale_poe
    from i2m2bench.harness import commands, publish
    from i2m2bench.harness.checks import check_folder_argument

    check_folder_argument(args.leaderboard_dir, "--leaderboard-dir")
    out = Path(args.leaderboard_dir)
    if args.action is not None or args.source is not None:
        return commands.main_add(args, out)
    if args.format != "md":
        if args.check:
            raise ValueError("--check compares the committed Markdown boards; it does not combine "
                             f"with --format {args.format}")
        problem = args.output and publish.output_problem(Path(args.output), out)
        if problem:  # never overwrite a results file or published predictions
            raise ValueError(problem)
        text = publish.export_board(out, args.board, args.format)
        if args.output:
            from i2m2bench.fileio import write_text_atomic

            write_text_atomic(Path(args.output), text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if args.output:
        raise ValueError("--output applies to --format csv|json; Markdown boards are written to "
                         "--leaderboard-dir")
    boards = [args.board] if args.board else None
    if args.check:
        problem = publish.folder_problem(out) if boards is None else None
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        stale, checked = publish.check_boards(out, boards, os.cpu_count() or 1)  # a process per core
        stale += stale_poe(out) if boards is None else []
        gpu = out / "gpu"  # scripts/gpu_check.sh's figures, once committed
        if boards is None and (gpu / "results").is_dir():
            stale += publish.stale_boards(gpu, None)
        if boards is None:
            stale += stale_poe(gpu)
        for s in stale:
            print(f"stale: {s}", file=sys.stderr)
        for problem in checked.problems:
            print(f"evidence: {problem}", file=sys.stderr)
        if stale:
            print("run `python -m i2m2bench leaderboard` and commit the result", file=sys.stderr)
        if stale or checked.problems:
            return 1
        unverified = (f"; no predictions to check for {', '.join(checked.unverified_boards)}"
                      if checked.unverified_boards else "")
        print(f"leaderboards in {out} are up to date; {checked.verified} published scores "
              f"recomputed from their predictions agree{unverified}")
        return 0
    for p in publish.render_all(out, boards):
        print(f"wrote {p}")
    if boards is None and json_path(out).exists():
        print(f"wrote {render_poe_file(out)}")
    return 0


def _cmd_compare(args) -> int:
    from i2m2bench.harness import publish
    from i2m2bench.harness.checks import check_folder_argument
    from i2m2bench.reporting.machines import comparison_text

    check_folder_argument(args.first, "FIRST")
    check_folder_argument(args.second, "SECOND")
    if args.ignore_unit_hash and not args.exact:
        raise ValueError("--ignore-unit-hash only applies to --exact (bit-identical rows); add --exact")
    if args.exact:
        from i2m2bench.harness.store import exact_differences, unit_count

        for what, folder in (("FIRST", args.first), ("SECOND", args.second)):
            if not unit_count(Path(folder) / "results"):  # "bit-identical" on nothing proves nothing
                raise ValueError(f"{what} {folder}: no result rows to compare (expected "
                                 f"{Path(folder) / 'results'}/<board>.jsonl with unit records)")
        diffs = exact_differences(Path(args.first) / "results", Path(args.second) / "results",
                                  by_hash=not args.ignore_unit_hash)
        for line in diffs:
            print(line)
        n = unit_count(Path(args.first) / "results")
        print(f"bit-identical: every score and figure (timings aside) of the {n} unit record(s) "
              "agrees" if not diffs else
              f"{len(diffs)} difference(s)")
        return 1 if diffs else 0
    cmp = publish.compare_folders(Path(args.first), Path(args.second), args.board)
    sys.stdout.write(comparison_text(cmp))
    if not cmp.compared:
        print("error: the two folders share no method: nothing was compared", file=sys.stderr)
        return 1
    return 0 if all(c.agree for c in cmp.columns if c.marked) else 1


def _family_parser(family, args) -> argparse.ArgumentParser:
    """``prepare <family>``'s own flags, built from the family's declared prepare options."""
    fp = argparse.ArgumentParser(prog=f"python -m i2m2bench prepare {args.dataset}",
                                 description=family.description or None)
    fp.add_argument("--data-root", metavar="DIR",
                    help=f"folder holding {family.folder}/ (default: $I2M2BENCH_DATA)")
    fp.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    for opt in family.options:
        flag = "--" + opt.name.replace("_", "-")
        if opt.flag and opt.default is False:  # a switch that is off by default
            fp.add_argument(flag, dest=opt.name, action="store_true", help=opt.help)
        elif opt.flag:
            fp.add_argument("--no-" + opt.name.replace("_", "-"), dest=opt.name,
                            action="store_false", help=opt.help)
        else:
            fp.add_argument(flag, dest=opt.name, type=opt.type, default=opt.default,
                            metavar=opt.metavar, help=opt.help)
    return fp


def _cmd_prepare(args) -> int:
    from i2m2bench.data import find_family

    family = find_family(args.dataset)
    if family.prepare_files is None:
        print(f"error: {family.name} has nothing to prepare (its files are read in place); "
              f"`python -m i2m2bench verify {family.name}` checks them", file=sys.stderr)
        return 2
    opts = vars(_family_parser(family, args).parse_args(args.options))
    data_root = opts.pop("data_root")
    args.debug = args.debug or opts.pop("debug")
    path = family.prepare(data_root, **opts)
    print(f"wrote {path}")
    return 0


def _cmd_verify(args) -> int:
    from i2m2bench.data import find_family

    print(find_family(args.dataset).verify(args.data_root, args.level))
    return 0


def _cmd_bench(args) -> int:
    from i2m2bench.bench import default_out_dir, run_benchmarks
    from i2m2bench.harness.checks import check_folder_argument

    if args.leaderboard_dir is not None:
        check_folder_argument(args.leaderboard_dir, "--leaderboard-dir")
        out = Path(args.leaderboard_dir)
    else:
        out = default_out_dir(args.quick)
    if not args.allow_dirty:  # published figures come from committed code (benchmarks/ too)
        from i2m2bench.harness.store.provenance import CODE_PATHS, dirty_tree_problem

        problem = dirty_tree_problem(out, CODE_PATHS + ("benchmarks",), made="figures")
        if problem:
            raise ValueError(problem)
    path = run_benchmarks(out, quick=args.quick, extra=args.pytest_args)
    print(f"wrote {path}")
    if args.quick and args.leaderboard_dir is None:
        print(f"(--quick: a scratch table in {out}/; the published leaderboards/poe_kernel.md is "
              "untouched; pass --leaderboard-dir to choose the folder)")
    return 0


def _common_flags() -> argparse.ArgumentParser:
    """The flags every command takes (also after the command's name)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python tracebacks on errors")
    common.add_argument("--no-plugins", action="store_true", default=argparse.SUPPRESS,
                        help="load no i2m2bench.plugins entry point (also: I2M2BENCH_PLUGINS=0)")
    return common


def _add_run(sub, common) -> None:
    r = sub.add_parser("run", help="train and evaluate a suite's methods, then re-render its leaderboard",
                       parents=[common],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    r.add_argument("--gin", action="append", required=True, metavar="FILE",
                   help="gin file defining the suite (repeatable; later files override)")
    r.add_argument("--gin-param", action="append", default=[], metavar="BINDING",
                   help="extra gin binding, e.g. \"train.epochs = 5\" or \"i2m2_lf/train.lr = 0.01\"")
    r.add_argument("--methods", nargs="+", metavar="NAME", help="only these methods of the suite")
    r.add_argument("--seeds", nargs="+", type=int, metavar="N", help="override suite.seeds")
    r.add_argument("--data-root", metavar="DIR",
                   help="folder holding real datasets (default: $I2M2BENCH_DATA; embedded data when absent)")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    r.add_argument("--out", default="runs", metavar="DIR",
                   help="run directories: configs, metrics, checkpoints (default: runs/)")
    r.add_argument("--leaderboard-dir", default="leaderboards", metavar="DIR",
                   help="where result rows and Markdown leaderboards go (default: leaderboards/)")
    r.add_argument("--allow-dirty", action="store_true",
                   help="write into the published leaderboards/ of a checkout whose code has "
                        "uncommitted changes (refused otherwise); the board names those rows")
    r.add_argument("--force", action="store_true", help="retrain units that are already complete")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--dry-run", action="store_true",
                   help="list the units the run would train, skip (done) and re-evaluate, with "
                        "their hashes; train and write nothing")
    r.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="write loss and validation metric per epoch per unit to DIR "
                        "(needs the tensorboard extra: pip install 'i2m2bench[tensorboard]')")
    r.add_argument("--executor", choices=["in-process", "ray"], default="in-process",
                   help="in-process (default; under torchrun each unit trains data-parallel over "
                        "the ranks) or ray: units as Ray tasks (needs the ray extra)")
    r.add_argument("--ray-address", metavar="HOST:PORT", default=None,
                   help="the Ray cluster to use (default: start a local instance)")
    r.add_argument("--ray-cpus-per-unit", type=int, default=1, metavar="N",
                   help="CPUs per unit under --executor ray, also its torch threads (default 1)")
    r.add_argument("--ray-gpus-per-unit", type=float, default=None, metavar="G",
                   help="GPUs per unit under --executor ray (default: 1 on CUDA, else 0)")
    r.set_defaults(func=_cmd_run)


def _add_list_leaderboard_compare(sub, common) -> None:
    from i2m2bench.harness import commands  # site, leaderboard add: arguments and handlers
    lst = sub.add_parser("list", help="list registered datasets, encoders, fusions and recipes",
                         parents=[common])
    lst.add_argument("kind", nargs="?", choices=["datasets", "encoders", "fusions", "perturbations", "recipes", "metrics",
                                              "layouts", "families", "official", "suites"])
    lst.set_defaults(func=_cmd_list)

    lb = sub.add_parser("leaderboard", help="re-render every leaderboard from its result rows, "
                        "or export one as CSV/JSON", parents=[common])
    commands.add_arguments(lb)
    lb.add_argument("--check", action="store_true",
                    help="fail (exit 1) if a committed leaderboard differs from its rows")
    lb.add_argument("--leaderboard-dir", default="leaderboards", metavar="DIR")
    lb.add_argument("--format", choices=["md", "csv", "json"], default="md",
                    help="md (default): re-render the Markdown boards; csv/json: print one board "
                         "as a table, one row per method, one column per protocol, metric and "
                         "statistic (mean, std; fractions, not percent), ready for pandas")
    lb.add_argument("--board", metavar="NAME",
                    help="the board (results/NAME.jsonl) to export; required with csv/json when "
                         "the folder holds several. With md: render or check only this board")
    lb.add_argument("--output", metavar="FILE",
                    help="with csv/json: write the table to FILE instead of standard output")
    lb.set_defaults(func=_cmd_leaderboard)

    commands.add_site_parser(sub, common)

    cp = sub.add_parser("compare", help="one board from two leaderboard folders side by side "
                        "(e.g. your run against the committed board): means and significance marks "
                        "per column; exit 1 when some column's marks differ", parents=[common])
    cp.add_argument("first", metavar="FIRST", help="a leaderboard folder (results/, predictions/)")
    cp.add_argument("second", metavar="SECOND", help="another leaderboard folder")
    cp.add_argument("--board", metavar="NAME",
                    help="the board to compare (required when FIRST holds several)")
    cp.add_argument("--exact", action="store_true",
                    help="instead: are the result rows bit-identical (timings aside)? exit 1 if not")
    cp.add_argument("--ignore-unit-hash", action="store_true",
                    help="with --exact: match units by setting, method and seed, not by unit hash "
                         "(a change of code moves every hash; were the numbers kept?)")
    cp.set_defaults(func=_cmd_compare)


def _add_prepare_verify_bench(sub, common) -> None:
    pr = sub.add_parser("prepare", help="convert a dataset family's real files once (fastmri: the "
                        "verified, memory-mapped cache its loader streams from; mimic: im.pk, read "
                        "through the allow-list unpickler, into mimic.npz; vqa-vs, nlvr2: features "
                        "with --backbone); `prepare FAMILY --help` lists the family's options",
                        parents=[common])
    pr.add_argument("dataset", metavar="FAMILY",
                    help="a dataset family: fastmri, mimic, vqa_vs (or vqa-vs), nlvr2, or a "
                         "plugin's (python -m i2m2bench list families)")
    pr.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                    help="--data-root DIR and the family's own options")
    pr.set_defaults(func=_cmd_prepare)

    vf = sub.add_parser("verify", help="check a dataset family's real (and prepared) files "
                        "against what its loader expects, without building the task",
                        parents=[common])
    vf.add_argument("dataset", metavar="FAMILY", help="a dataset family (see prepare)")
    vf.add_argument("--data-root", metavar="DIR", help="the data root (default: $I2M2BENCH_DATA)")
    vf.add_argument("--level", default="quick", choices=["quick", "full", "probe", "size"],
                    help="quick (default; sizes, shapes, sampled checksums; alias probe, size) or "
                         "full (every byte's sha256)")
    vf.set_defaults(func=_cmd_verify)

    bn = sub.add_parser("bench", help="run the PoE kernel benchmarks and render leaderboards/poe_kernel.md",
                        parents=[common])
    bn.add_argument("--quick", action="store_true",
                    help="tiny grid: checks the code in seconds; writes to runs/bench-quick/ "
                         "(not leaderboards/) unless --leaderboard-dir is given")
    bn.add_argument("--leaderboard-dir", default=None, metavar="DIR",
                    help="where bench/poe_kernel.json and poe_kernel.md go (default: "
                         "leaderboards/, with --quick runs/bench-quick/)")
    bn.add_argument("--allow-dirty", action="store_true",
                    help="measure into the published leaderboards/ even from code with "
                         "uncommitted changes (each figure records its commit as +dirty)")
    bn.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                    help="extra pytest arguments after --, e.g. -- -k fwdbwd")
    bn.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: one sub-parser per command."""
    p = argparse.ArgumentParser(
        prog="python -m i2m2bench",
        description="i2m2bench: train and evaluate multimodal fusion methods (I2M2 and "
                    "baselines) from gin suites, and publish Markdown leaderboards.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    p.add_argument("--no-plugins", action="store_true",
                   help="load no i2m2bench.plugins entry point (also: I2M2BENCH_PLUGINS=0)")
    common = _common_flags()  # so the flags also work after the command
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub, common)
    _add_list_leaderboard_compare(sub, common)
    _add_prepare_verify_bench(sub, common)
    return p


def _keep_freed_memory() -> None:
    """Let glibc keep freed blocks instead of returning them to the OS at every step.

    Training allocates and frees the same multi-MB activation buffers every step; by default
    glibc serves them with fresh mmaps and trims the heap, so each step pays page faults again
    (30 M minor faults, 115 s of system time in the AV-MNIST suite; 19 M with this tuning, which
    speeds an isolated training-step loop by 7-11% though the suite's wall time did not move
    measurably). Only the CLI process is tuned; importing
    i2m2bench as a library changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's maximum, 32 MiB
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: trim only above 1 GiB of free heap
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        _keep_freed_memory()
    from i2m2bench.registry import PLUGINS_ENV, load_plugins

    if args.no_plugins:
        os.environ[PLUGINS_ENV] = "0"  # also for the library calls the command makes
    try:
        load_plugins()
        return args.func(args)
    except KeyboardInterrupt:
        if args.command == "prepare":
            print("interrupted; the prepared folder is as it was (a feature extraction resumes "
                  "from its finished batches on the next prepare)", file=sys.stderr)
        else:
            print("interrupted; completed units are kept and skipped on the next run",
                  file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear message unless --debug
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
