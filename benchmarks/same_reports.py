"""The faster path writes the same reports: the bundled model, fused against step by step.

    python benchmarks/same_reports.py [--n 2000] [--seed 7] [--split test]

Synthesizes `n` phantoms of a seed no model was trained on (2000 of seed 7: the 400 test
studies the bundled model's scores are quoted on, minirad/weights/README.md), then writes every
test study's report twice, with ReportModel.fused on (the default: the attention step as one
Function, the cells' float32 tanh) and off (the node-by-node path), by greedy decoding and by
the beam `minirad evaluate` uses (width 3, sentence blocking). Prints how many reports differ,
and the first difference; exit status 1 if any does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from minirad.data.synth import synthesize_dataset
from minirad.models.report_checkpoint import load_report_model
from minirad.models.report_data import ReportArrays, read_records, split
from minirad.report.decoding import Sentences, generate
from minirad.report.pipeline import default_model_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    model, vocab, _ = load_report_model(default_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        synthesize_dataset(f"{tmp}/phantoms", args.n, args.seed)
        records = split(read_records(f"{tmp}/phantoms"), args.split)
        size, max_len = model.config.image_size, model.config.max_len
        images = ReportArrays.from_records(records, vocab, size, max_len, "reading").images
    methods = {
        "greedy": ("greedy", {}),
        "beam": ("beam", {"width": 3, "block_sentences": Sentences.of(vocab)}),
    }
    differing = 0
    for name, (method, options) in methods.items():
        reports = {}
        for fused in (True, False):
            model.fused = fused
            decoded = generate(model, images, method, **options)
            reports[fused] = [vocab.decode(d.tokens) for d in decoded]
        changed = [i for i, (a, b) in enumerate(zip(*reports.values(), strict=True)) if a != b]
        differing += len(changed)
        print(f"{name}: {len(changed)} of {len(images)} reports differ, fused against step by step")
        if changed:
            i = changed[0]
            print(f"  first, study {i}:\n  fused: {reports[True][i]}\n  plain: {reports[False][i]}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
