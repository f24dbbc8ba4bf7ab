"""The CLI's ``site`` command and ``leaderboard add SOURCE``: their arguments and handlers, kept
light (the heavy modules, :mod:`i2m2bench.harness.site` and :mod:`i2m2bench.harness.contribute`,
are imported when the command runs, not when the parser is built)."""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    """``leaderboard``'s positional ``add SOURCE`` (the ``leaderboard`` parser of the CLI)."""
    parser.add_argument("action", nargs="?", choices=["add"],
                        help="add SOURCE: merge a run of a published suite (your method, e.g. "
                             "from a plugin) into the board in --leaderboard-dir when it is "
                             "comparable (docs/contributing-results.md)")
    parser.add_argument("source", nargs="?", metavar="SOURCE",
                        help="with add: the folder your run wrote with --leaderboard-dir (or one "
                             "results file in it)")


def main_add(args, out: Path) -> int:
    """``python -m i2m2bench leaderboard add SOURCE [--leaderboard-dir DIR]``."""
    from i2m2bench.harness.contribute import NotComparable, add_results

    if args.action != "add" or args.source is None:
        raise ValueError("usage: python -m i2m2bench leaderboard add SOURCE [--leaderboard-dir "
                         "DIR], SOURCE being the folder your run wrote with --leaderboard-dir")
    if args.check or args.format != "md" or args.board or args.output:
        raise ValueError("leaderboard add takes SOURCE and --leaderboard-dir only")
    try:
        added = add_results(Path(args.source), out)
    except NotComparable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for a in added:
        print(f"added {', '.join(a.methods)} ({a.units} units) to {out}/{a.board}.md")
        if a.ignored:
            print(f"  left as they are on the board: {', '.join(a.ignored)}")
        if a.without_predictions:
            print(f"  no per-sample predictions for {', '.join(a.without_predictions)}: shown "
                  "with intervals, outside the significance marks, unverified by --check")
    print("review the board's diff, then commit results/, predictions/ and the board",
          file=sys.stderr)
    return 0


def main_site(args) -> int:
    """``python -m i2m2bench site --out DIR [--leaderboard-dir DIR]``."""
    import time

    from i2m2bench.harness.checks import check_folder_argument
    from i2m2bench.harness.site import build_site

    check_folder_argument(args.leaderboard_dir, "--leaderboard-dir")
    t0 = time.perf_counter()
    written = build_site(Path(args.leaderboard_dir), Path(args.out))
    print(f"wrote {len(written)} files into {args.out} in {time.perf_counter() - t0:.1f} s; "
          f"open {Path(args.out) / 'index.html'}")
    return 0


def add_site_parser(sub, common) -> None:
    """The ``site`` command's parser."""
    st = sub.add_parser("site", help="build the static leaderboard website from the result "
                        "records (no network needed to build or view it)", parents=[common])
    st.add_argument("--out", required=True, metavar="DIR", help="where the site's files go")
    st.add_argument("--leaderboard-dir", default="leaderboards", metavar="DIR",
                    help="the leaderboard folder whose records the site shows")
    st.set_defaults(func=main_site)
