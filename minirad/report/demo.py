"""`minirad demo`: the whole pipeline on a few fresh phantoms, with the bundled weights.

    minirad-demo/
      images/phantom-<i>.png       the radiographs (seed 2026: never seen in training)
      reports/phantom-<i>.txt .json .html .png
      index.html                   one page linking them, with the true findings beside each

Nothing to download, no argument needed: it shows on a fresh install that everything works.
On a GPU backend each phantom crosses to the device once and its report back once (Reporter).
"""

from __future__ import annotations

import html
from pathlib import Path

from minirad.data.gate import MIN_SIDE
from minirad.data.phantom import caption, synthesize
from minirad.errors import ArgumentError
from minirad.files import write_atomically
from minirad.report.pipeline import Reporter
from minirad.report.render import png_bytes, write_outputs
from minirad.report.review import pretty


def run_demo(
    out: str | Path = "minirad-demo",
    n: int = 4,
    seed: int = 2026,
    model_path: str | Path | None = None,
) -> list[Path]:
    """Synthesize n phantoms, report on each, print a summary; returns the HTML pages."""
    if n < 1:
        raise ArgumentError("n", f"need at least one phantom, got {n}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    reporter = Reporter(model_path)
    pages, rows = [], []
    # Drawn at the model's input size, or at the smallest the input gate accepts (a tiny model).
    size = max(reporter.image_size, MIN_SIDE)
    for index, (pixels, study) in enumerate(synthesize(n, seed, size=size)):
        name = f"phantom-{seed}-{index:03d}"
        image_path = out / "images" / f"{name}.png"
        write_atomically(image_path, png_bytes(pixels))
        report = reporter.report_file(image_path)
        paths = write_outputs(report, out / "reports", name)
        pages.append(paths[2])
        found = report.review.positive  # the labeler already read the report in review
        truth = caption(study).replace("\n", ", ")
        said = ", ".join(pretty(f) for f in sorted(found)) or "normal"
        print(f"{name}: truth: {truth} | report states: {said} | review: {report.review.verdict}")
        rows.append((name, truth, said, report.review.verdict))
    _write_index(out, rows)
    print(
        f"\n{len(pages)} reports in {out / 'reports'}/ (.txt .json .html .png); "
        f"open {out / 'index.html'}"
    )
    return pages


def _write_index(out: Path, rows: list[tuple[str, str, str, str]]) -> None:
    lines = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>minirad demo</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em} td,th{padding:.3em 1em;"
        "text-align:left}</style></head><body><h1>minirad demo</h1>",
        "<table><tr><th>image</th><th>true findings</th><th>the report states</th>"
        "<th>review</th></tr>",
    ]
    for name, truth, said, verdict in rows:
        lines.append(
            f"<tr><td><a href='reports/{name}.html'>{name}</a></td><td>{html.escape(truth)}</td>"
            f"<td>{html.escape(said)}</td><td>{html.escape(verdict)}</td></tr>"
        )
    lines.append("</table></body></html>\n")
    write_atomically(out / "index.html", "\n".join(lines).encode("utf-8"))
