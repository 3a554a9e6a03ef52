"""The `minirad` command line.

    minirad            the version and the kernel backends that run here
    minirad doctor     versions, BLAS, GPU/simulator facts, and why each backend can or cannot run
    minirad bench      time every kernel against PyTorch (benchmarks/bench_kernels.py)
    minirad data synth --n N --seed S --out DIR
                       phantom radiographs + reports in R2Gen's layout, and a contact sheet

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


def _bench(bench_args: list[str]) -> int:
    """Run benchmarks/bench_kernels.py of this source checkout with `bench_args`.

    A subprocess, not an import: the benchmark starts one process per contender, and those
    processes must be able to import the script as a module of its own.
    """
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_kernels.py"
    if not script.is_file():
        raise OSError(
            f"{script}: not found; `minirad bench` needs a source checkout of minirad "
            "(pip install -e .), because the benchmarks are not part of the installed package"
        )
    return subprocess.run([sys.executable, str(script), *bench_args]).returncode


def _data_synth(args: argparse.Namespace) -> int:
    from minirad.data.synth import synthesize_dataset

    out = synthesize_dataset(args.out, n=args.n, seed=args.seed, size=args.size)
    print(f"wrote {args.n} phantoms to {out}/ (annotation.json, images/, contact_sheet.png)")
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
    data = commands.add_parser("data", help="synthesize and inspect datasets")
    data_commands = data.add_subparsers(title="data commands", required=True)
    synth = data_commands.add_parser("synth", help="write a phantom dataset (R2Gen layout)")
    synth.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="the same seed gives identical files")
    synth.add_argument("--out", required=True, help="a new or empty directory")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels")
    synth.set_defaults(run=_data_synth)
    # Listed for --help; its options belong to the benchmark script (see main).
    commands.add_parser("bench", help="time every kernel against PyTorch (minirad bench --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:  # every later option is the benchmark's own
            return _bench(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.run(args))
    except (ValueError, OSError) as error:
        print(f"minirad: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
