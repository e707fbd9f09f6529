"""Command line: ``python -m xaikit demo`` and ``python -m xaikit samples``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import XaikitError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xaikit", description="xaikit: explain models on medical images.")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the pipeline on the shipped sample data and write an HTML report")
    demo.add_argument("--out", type=Path, default=Path("xaikit-demo"), help="report folder (default: xaikit-demo)")
    demo.add_argument("--samples", type=Path, default=None, help="sample data folder (default: the shipped one)")
    demo.add_argument("--smoke", action="store_true", help="a fast, reduced run (for CI)")
    demo.add_argument("--stages", nargs="+", default=None, metavar="STAGE",
                      help="run only these stages, in this order (default: all; see xaikit.demo.STAGES)")
    samples = sub.add_parser("samples", help="rebuild data_samples/ deterministically")
    samples.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped data_samples/)")
    samples.add_argument("--no-models", action="store_true", help="skip training the sample models")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            index = run_demo(args.out, samples_dir=args.samples, smoke=args.smoke, stages=args.stages)
            print(f"report written: {index.resolve()}")
        elif args.command == "samples":
            from .samples import build_samples

            written = build_samples(args.out, models=not args.no_models)
            print(f"sample data written: {written}")
    except XaikitError as err:
        print(f"xaikit: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
