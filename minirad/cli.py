"""The `minirad` command line.

    minirad            the version and the kernel backends that run here
    minirad doctor     versions, BLAS, GPU/simulator facts, and why each backend can or cannot run
    minirad bench      time every kernel against PyTorch (benchmarks/bench_kernels.py)
    minirad data synth --n N --seed S --out DIR
                       phantom radiographs + reports in R2Gen's layout, and a contact sheet
    minirad demo       phantoms -> reports (text, JSON, HTML, PNG) with the bundled weights
    minirad train --data DIR --out MODEL.npz
                       train the report generator (progress, validation, best checkpoint)
    minirad evaluate --data DIR [--split test] [--json]
                       clinical F1, BLEU, ROUGE-L, CIDEr of a model and of two baselines
    minirad report IMAGE_OR_DIR... [--out DIR] [--beam K] [--json]
                       reviewed reports for PNG/JPEG/DICOM files

Every command takes --backend NAME (numpy, numba, cuda, cupy, cuda_c_cpu or auto; default:
$MINIRAD_BACKEND, else auto, which `minirad doctor` explains): the kernels that compute, and
with them where the model and the data live (a GPU backend keeps both on the device).

Every command exits 0 on success and 1 with a one-line message on bad input; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from minirad import __version__
from minirad.errors import ArgumentError


def _summary(_: argparse.Namespace) -> int:
    from minirad import kernels

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


def _train(args: argparse.Namespace) -> int:
    from minirad.models.train_report import TrainConfig, curves_path, train_report_model

    # Each flag named like a TrainConfig field sets that field. A flag not given is absent from
    # args (argparse.SUPPRESS), so the field keeps TrainConfig's default: defaults live there.
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})
    result = train_report_model(args.data, args.out, config, resume=args.resume)
    out, history = Path(args.out), result.history
    if not history.epoch:  # Ctrl-C in the first epoch: no curves were drawn
        print(f"interrupted in epoch 1: {out} holds the weights so far; no curves yet")
        return 130
    best = history.best_epoch()
    held = f"epoch {best}" if best is not None else f"epoch {history.epoch[-1]}, not validated"
    print(f"best model ({held}) in {out}; curves in {curves_path(out)}")
    return 130 if result.interrupted else 0


def _method_for(beam: int) -> str:
    """--beam K: 1 is greedy decoding, K > 1 a beam of width K."""
    if beam < 1:
        raise ValueError(f"--beam: the beam width must be >= 1 (1 = greedy), got {beam}")
    return "beam" if beam > 1 else "greedy"


def _evaluate(args: argparse.Namespace) -> int:
    from minirad.report.evaluation import evaluate, format_results
    from minirad.report.pipeline import default_model_path

    if args.limit is not None and args.limit < 1:
        raise ValueError(
            f"--limit: must be >= 1 (the number of studies to score), got {args.limit}"
        )
    model = args.model or default_model_path()
    method = _method_for(args.beam)
    results = evaluate(
        model,
        args.data,
        args.split,
        method,
        args.beam,
        args.limit,
        args.train_data,
        reliability_path=args.reliability,
        pointing_path=args.pointing,
    )
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0


@dataclasses.dataclass(frozen=True)
class Input:
    """One image to report on: where it is, and its name relative to the argument that named it
    ("p1/image.png" inside the folder argument "scans/"; "chest.dcm" for a file argument)."""

    path: Path
    name: str

    @property
    def shown(self) -> str:
        """The name as text that can be printed and encoded: bytes that are not UTF-8 in a file
        name (a Latin-1 "caf\\xe9.png") become U+FFFD instead of failing every write."""
        return printable(self.name)


def printable(text: str) -> str:
    """`text` with the undecodable bytes of a file name (Python's surrogate escapes) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _inputs(arguments: list[str]) -> tuple[list[Input], list[str]]:
    """The files named, and the image files inside each folder named (sorted, recursively).

    Returns the inputs and one error line per argument that names no image (a folder with none
    inside): like a missing file, it is reported and the other arguments are still read. A
    missing or bad file is an input: the reader says what is wrong with it, in one line.
    """
    from minirad.data.datasets import IMAGE_SUFFIXES

    inputs, errors = [], []
    for argument in arguments:
        path = Path(argument)
        if not path.is_dir():
            inputs.append(Input(path, path.name))
            continue
        inside = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not inside:
            errors.append(f"{printable(str(path))}: no PNG, JPEG, TIFF or DICOM file inside")
        inputs += [Input(p, p.relative_to(path).as_posix()) for p in inside]
    return inputs, errors


def _output_stems(inputs: list[Input]) -> list[str]:
    """The name each input's outputs get, in order: its relative name without the suffix
    ("p1/image" for p1/image.png, so that p1/image.png and p2/image.png keep apart). Where two
    inputs share that (chest.dcm and chest.jpg), the suffix joins the stem ("chest-dcm",
    "chest-jpg"); where they still clash (a/chest.png and b/chest.png given as two files, both
    named "chest.png"), the later ones are numbered ("chest-2"), in the order given."""
    plain = [str(Path(i.name).with_suffix("")) for i in inputs]
    stems = [
        f"{stem}-{Path(i.name).suffix[1:].lower()}" if plain.count(stem) > 1 else stem
        for stem, i in zip(plain, inputs, strict=True)
    ]
    unique, seen = [], set()
    for stem in stems:
        candidate, number = stem, 1
        while candidate in seen:
            number += 1
            candidate = f"{stem}-{number}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _report(args: argparse.Namespace) -> int:
    """Report on every input; a bad one is one line on stderr, and the batch goes on.

    Each input's output set is written whole or not at all (render.write_outputs). Ctrl-C stops
    the batch between two inputs' sets, and says how far it got.
    """
    from minirad.report.pipeline import Reporter

    reporter = Reporter(args.model)
    method = _method_for(args.beam)
    inputs, errors = _inputs(args.images)
    for line in errors:
        print(f"minirad: error: {line}", file=sys.stderr)
    results: list[dict] = []
    failed, done = len(errors), 0
    try:
        for item, stem in zip(inputs, _output_stems(inputs), strict=True):
            failed += 0 if _report_one(reporter, item, stem, args, method, results) else 1
            done += 1
    except KeyboardInterrupt:
        print(
            f"minirad: interrupted after {done} of {len(inputs)} inputs "
            "(each report written is whole)",
            file=sys.stderr,
        )
        return 130
    finally:
        if args.json:
            print(json.dumps(results, indent=2))
    if args.out:
        print(f"reports written to {args.out}/", file=sys.stderr)
    return 1 if failed else 0


def _report_one(reporter, item: Input, stem: str, args, method: str, results: list) -> bool:
    """Report on one input, write its set, print it; False (and one line) if it failed."""
    from minirad.data.gate import InputRefusedError
    from minirad.report.render import to_text, write_outputs

    try:
        report = reporter.report_file(item.path, force=args.force, method=method, width=args.beam)
    except ValueError as error:  # ImageReadError and the gate's refusals included
        hint = ""
        if isinstance(error, InputRefusedError) and error.overridable:
            hint = " (--force reports on it anyway)"
        print(f"minirad: error: {printable(str(error))}{hint}", file=sys.stderr)
        return False
    report = dataclasses.replace(report, source=item.shown)
    if args.out:
        try:
            write_outputs(report, args.out, stem)
        except OSError as error:  # a full disk, a folder without permission, ...
            reason = error.strerror or str(error)
            print(
                f"minirad: error: {printable(str(item.path))}: its report was not written to "
                f"{args.out}: {reason}",
                file=sys.stderr,
            )
            return False
    if args.json:
        results.append(report.to_dict())
    else:
        print(f"== {printable(str(item.path))}\n{to_text(report)}")
    return True


def _demo(args: argparse.Namespace) -> int:
    from minirad.report.demo import run_demo

    run_demo(args.out, n=args.n, seed=args.seed)
    return 0


# Beam search by default: greedy decoding repeats a sentence in 45 of the bundled model's 400
# unseen test reports, a beam with sentence blocking in none, and its clinical F1 is higher
# (README, "The bundled model").
BEAM_HELP = "beam width (default 3; 1 = greedy); a beam never repeats a sentence in a section"


def flag_for(argument: str) -> str:
    """The flag that sets a library argument: warmup_epochs is --warmup-epochs.

    Every argument that a command passes on from a flag has the flag's name (argparse's dest),
    so the name alone says which flag it was.
    """
    return "--" + argument.replace("_", "-")


def _backend_flag() -> argparse.ArgumentParser:
    """The --backend option, shared by the top level and every command (argparse parents)."""
    from minirad.kernels import BACKENDS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--backend",
        choices=(*BACKENDS, "auto"),
        default=argparse.SUPPRESS,  # absent: $MINIRAD_BACKEND, else auto (minirad.backend)
        help="the kernels to compute with (default: $MINIRAD_BACKEND, else auto)",
    )
    return common


def _use_backend(args: argparse.Namespace) -> None:
    """Switch to the backend --backend names; ValueError (one line) if it cannot run here."""
    name = getattr(args, "backend", None)
    if name is not None:
        from minirad import backend

        backend.use_backend(name)


def build_parser() -> argparse.ArgumentParser:
    common = _backend_flag()
    parser = argparse.ArgumentParser(
        prog="minirad",
        description="Deep learning from the inside: kernels to reports.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"minirad {__version__}")
    parser.set_defaults(run=_summary)
    commands = parser.add_subparsers(title="commands")
    doctor = commands.add_parser(
        "doctor", parents=[common], help="what this machine offers and why not"
    )
    doctor.set_defaults(run=_doctor)
    data = commands.add_parser("data", parents=[common], help="synthesize and inspect datasets")
    data_commands = data.add_subparsers(title="data commands", required=True)
    synth = data_commands.add_parser(
        "synth", parents=[common], help="write a phantom dataset (R2Gen layout)"
    )
    synth.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="the same seed gives identical files")
    synth.add_argument("--out", required=True, help="a new or empty directory")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels")
    synth.set_defaults(run=_data_synth)
    demo = commands.add_parser(
        "demo", parents=[common], help="phantoms -> reviewed reports with the bundled model"
    )
    demo.add_argument(
        "--out", default="minirad-demo", help="folder for the demo (default ./minirad-demo)"
    )
    demo.add_argument("--n", type=int, default=4, help="number of phantoms (default 4)")
    demo.add_argument(
        "--seed", type=int, default=2026, help="phantom seed (never used in training)"
    )
    demo.set_defaults(run=_demo)

    train = commands.add_parser(
        "train", parents=[common], help="train the report generator on a dataset folder"
    )
    train.add_argument("--data", required=True, help="annotation.json folder or IU X-Ray CSVs")
    train.add_argument("--out", required=True, help="MODEL.npz: the best checkpoint")
    # TrainConfig's fields: no defaults here, the dataclass's own apply (see _train).
    config_flag = functools.partial(train.add_argument, default=argparse.SUPPRESS)
    config_flag("--epochs", type=int)
    config_flag("--batch-size", type=int)
    config_flag("--lr", type=float)
    config_flag("--seed", type=int, help="the same seed gives the same weights")
    config_flag("--cell", choices=("lstm", "gru"))
    config_flag("--image-size", type=int)
    config_flag("--val-limit", type=int, help="validation studies per epoch")
    config_flag("--warmup-epochs", type=int, help="finding head only, first")
    config_flag("--finding-weight", type=float, help="lambda of the BCE")
    train.add_argument("--resume", action="store_true", help="continue from MODEL.npz.last.npz")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="all metrics for a model and two baselines"
    )
    evaluate.add_argument("--data", required=True, help="dataset folder (with a train split)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--model", help="MODEL.npz (default: the bundled weights)")
    evaluate.add_argument("--beam", type=int, default=3, help=BEAM_HELP)
    evaluate.add_argument("--limit", type=int, help="score only the first N studies")
    evaluate.add_argument(
        "--train-data", help="the baselines' training set (default: the train split of --data)"
    )
    evaluate.add_argument(
        "--reliability", metavar="PNG", help="write the reliability diagram of the finding head"
    )
    evaluate.add_argument(
        "--pointing", metavar="PNG", help="write the pointing game's chart (phantom data only)"
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(run=_evaluate)

    report = commands.add_parser(
        "report", parents=[common], help="reviewed reports for PNG/JPEG/DICOM images"
    )
    report.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    report.add_argument("--out", help="write <name>.txt/.json/.html/.png here")
    report.add_argument("--model", help="MODEL.npz (default: the bundled weights)")
    report.add_argument("--beam", type=int, default=3, help=BEAM_HELP)
    report.add_argument("--json", action="store_true", help="print JSON instead of text")
    report.add_argument(
        "--force",
        action="store_true",
        help="report on a file whose DICOM header the input gate refuses (CT, lateral, ...); "
        "the report is marked FORCED",
    )
    report.set_defaults(run=_report)

    # Listed for --help; its options belong to the benchmark script (see main).
    commands.add_parser("bench", help="time every kernel against PyTorch (minirad bench --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:  # every later option is the benchmark's own
            return _bench(argv[1:])
        args = build_parser().parse_args(argv)
        _use_backend(args)
        return int(args.run(args))
    except ArgumentError as error:  # the library names its argument; the user gave a flag
        print(f"minirad: error: {flag_for(error.argument)}: {error.reason}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"minirad: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: no traceback; files are only ever written whole
        print("minirad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
