"""The `minirad` command line.

    minirad            the version and the kernel backends that run here
    minirad doctor     versions, BLAS, GPU/simulator facts, and why each backend can or cannot run

Every command exits 0 on success and 1 with a one-line message on bad input; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import kernels
from minirad import __version__


def _summary(_: argparse.Namespace) -> int:
    print(f"minirad {__version__}")
    print(f"kernel backends available here: {', '.join(kernels.available())}")
    print("run `minirad doctor` for details, `minirad --help` for the commands")
    return 0


def _doctor(_: argparse.Namespace) -> int:
    from minirad.doctor import print_report

    print_report()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minirad", description="Deep learning from the inside: kernels to reports."
    )
    parser.add_argument("--version", action="version", version=f"minirad {__version__}")
    parser.set_defaults(run=_summary)
    commands = parser.add_subparsers(title="commands")
    doctor = commands.add_parser("doctor", help="what this machine offers and why not")
    doctor.set_defaults(run=_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, OSError) as error:
        print(f"minirad: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
