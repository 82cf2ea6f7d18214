"""Command line: `python -m kalavai_utils COMMAND ...` (also installed as `kalavai`).

Bad input ends with one line `error: ...` on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from .errors import KalavaiError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kalavai", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    nb = sub.add_parser("run-notebooks", help="execute the numbered notebooks with papermill")
    nb.add_argument("--scale", default="tiny")
    nb.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,01")
    nb.add_argument("--seeds", help="comma-separated seeds, overriding the scale's")
    nb.add_argument("--runs-root", help="folder for runs/ (default: ./runs)")
    nb.add_argument("--kernel", help="Jupyter kernel name (default python3)")

    cs = sub.add_parser("check-scale", help="validate a scale name (used by run_all.sh before anything runs)")
    cs.add_argument("scale")
    cs.add_argument("--only")
    cs.add_argument("--seeds")

    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run-notebooks":
            from .notebooks import run_notebooks

            run_notebooks(args.scale, args.only, args.seeds, args.runs_root, args.kernel)
        elif args.command == "check-scale":
            from .notebooks import parse_seeds, select
            from .scales import get_scale

            get_scale(args.scale)
            select(args.only)
            parse_seeds(args.seeds)
    except KalavaiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
