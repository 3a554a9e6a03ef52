"""A Report on disk: text, JSON, an HTML page with the attention map of every word, a PNG figure.

    paths = write_outputs(report, "out/", stem="chest")   # out/chest.txt .json .html .png

The four files are one set: all are rendered in memory first, then written to temporary names
and renamed into place together (minirad.files.write_set_atomically), so a failure or Ctrl-C
never leaves half a report, or a .txt without its .png, under the final names.

A report that the input gate refused and `force` let through says so first, in every format
("FORCED past the input gate: <reason>", and "forced" in the JSON). The HTML page is self-contained
(images embedded as base64 PNG): one file to open, mail or archive.

An attention map: the decoder's weights alpha (G, G) over the feature-grid cells, upsampled to
the image and laid over it in colour (bright = where the decoder looked for that word).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from minirad.data.findings import FINDINGS
from minirad.files import write_set_atomically
from minirad.report.pipeline import Report
from minirad.report.review import pretty

FORMATS = ("txt", "json", "html", "png")


# ---------------------------------------------------------------------------------------------
# Text and JSON


def forced_lines(report: Report) -> list[str]:
    """One line per input-gate refusal that force overrode (none for an ordinary report)."""
    return [f"FORCED past the input gate: {reason}" for reason in report.forced]


def to_text(report: Report) -> str:
    """The report as a reader wants it, then the review verdict and its reasons."""
    lines = [*forced_lines(report), report.text, "", f"Review: {report.review.verdict}"]
    lines += [f"  - {reason}" for reason in report.review.reasons]
    lines.append(report.review.familiarity_line())
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Images


def grey_to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) floats in [0, 1] -> (H, W, 3) uint8."""
    grey = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def attention_overlay(image: np.ndarray, alpha: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """image (H, W) in [0, 1], alpha (G, G) -> (H, W, 3) uint8: the map in colour over the image.

    The map is upsampled bilinearly and scaled to [0, 1] by its own maximum, so that a word's
    map shows where it looked, whatever the absolute spread of its weights.
    """
    from matplotlib import colormaps

    H, W = image.shape
    upsampled = Image.fromarray(alpha.astype(np.float32), mode="F").resize(
        (W, H), Image.Resampling.BILINEAR
    )
    heat = np.asarray(upsampled, dtype=np.float64)
    heat = heat / heat.max() if heat.max() > 0 else heat
    colour = colormaps["inferno"](heat)[:, :, :3] * 255.0
    weight = strength * heat[:, :, None]  # no colour where the decoder did not look
    blended = (1 - weight) * grey_to_rgb(image) + weight * colour
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray, scale: int = 1) -> bytes:
    picture = Image.fromarray(rgb)
    if scale != 1:
        picture = picture.resize(
            (rgb.shape[1] * scale, rgb.shape[0] * scale), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------------------------------------
# HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
.top { display: flex; gap: 2em; align-items: flex-start; }
.report { white-space: pre-wrap; font-size: 1.05em; line-height: 1.5; max-width: 40em; }
.verdict { font-weight: bold; padding: 0.2em 0.6em; border-radius: 0.3em; }
.accepted { background: #d9f2d9; } .needs { background: #fde2c8; }
table { border-collapse: collapse; } td, th { padding: 0.15em 0.8em; text-align: left; }
.bar { background: #4a78b5; height: 0.8em; display: inline-block; }
.words { display: flex; flex-wrap: wrap; gap: 0.6em; }
.word { text-align: center; font-size: 0.85em; }
.word img { display: block; width: 96px; height: 96px; image-rendering: pixelated; }
.meta { color: #666; font-size: 0.85em; }
.forced { background: #f8d0d0; padding: 0.4em 0.8em; font-weight: bold; }
"""


def _findings_table(report: Report) -> str:
    rows = []
    for name in FINDINGS:
        p = report.probabilities[name]
        stated = {1: "yes", 0: "no", -1: "uncertain", None: "not mentioned"}[
            report.review.stated.get(name)
        ]
        rows.append(
            f"<tr><td>{html.escape(pretty(name))}</td><td>{p:.2f}</td>"
            f"<td><span class='bar' style='width:{100 * p:.0f}px'></span></td>"
            f"<td>{stated}</td></tr>"
        )
    header = "<tr><th>finding</th><th>P</th><th></th><th>stated in the report</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def to_html(report: Report) -> str:
    """A self-contained page: image, report, review, findings and one attention map per word."""
    image_png = png_bytes(grey_to_rgb(report.image), scale=2)
    words = []
    for t, word in enumerate(report.words):
        overlay = png_bytes(attention_overlay(report.image, report.attention[t]))
        words.append(
            f"<div class='word'><img src='{_data_uri(overlay)}' alt='attention for "
            f"{html.escape(word)}'>{t + 1}. {html.escape(word)}</div>"
        )
    verdict_class = "accepted" if report.review.verdict == "accepted" else "needs"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in report.review.reasons)
    forced = "".join(f"<p class='forced'>{html.escape(line)}</p>" for line in forced_lines(report))
    identity = (
        f"input {html.escape(report.source)} (sha256 {report.source_sha256[:16]}...), "
        f"model {html.escape(str(report.model.get('file')))} "
        f"(sha256 {str(report.model.get('sha256'))[:16]}...), "
        f"decoding {html.escape(json.dumps(report.decoding))}, {report.seconds:.2f} s"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>minirad report: {html.escape(report.source)}</title><style>{_STYLE}</style></head>
<body>
<h1>Chest radiograph report</h1>
<p class="meta">{identity}<br>Generated by a model trained on synthetic phantoms: a teaching
tool, not a medical device.</p>
{forced}
<div class="top">
<img src="{_data_uri(image_png)}" alt="the radiograph" width="{2 * report.image.shape[1]}">
<div>
<div class="report">{html.escape(report.text)}</div>
<p>Review: <span class="verdict {verdict_class}">{html.escape(report.review.verdict)}</span></p>
<ul>{reasons}</ul>
<p>{html.escape(report.review.familiarity_line())}</p>
<h3>Finding analysis</h3>
{_findings_table(report)}
</div></div>
<h2>Where the decoder looked, word by word</h2>
<div class="words">{"".join(words)}</div>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# PNG figure


def _content_words(report: Report, count: int) -> list[int]:
    """Indices of up to `count` words worth a map: not ".", not a section name, not a repeat."""
    skip = {".", "findings", "impression", "the", "is", "are", "of", "no", "or", "and", "in"}
    chosen, seen = [], set()
    for t, word in enumerate(report.words):
        if word not in skip and word not in seen:
            chosen.append(t)
            seen.add(word)
    if len(chosen) > count:  # spread over the report rather than the first few
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, count).astype(int)]
    return chosen


def to_png(report: Report, dpi: int = 100) -> bytes:
    """One figure: the image, the finding probabilities, the report, and 8 words' maps."""
    from matplotlib.figure import Figure  # not pyplot: no global backend switch

    fig = Figure(figsize=(12, 8))
    grid = fig.add_gridspec(3, 4, height_ratios=[1.4, 1.4, 1])
    ax = fig.add_subplot(grid[0:2, 0])
    ax.imshow(report.image, cmap="gray", vmin=0, vmax=1)
    # parse_math=False: a file named "$\\frac{a}{$.png" is a name, not a formula to typeset
    # (matplotlib would parse text between two $ signs as math, and fail on this one).
    ax.set_title(report.source, parse_math=False)
    ax.set(xticks=[], yticks=[])
    ax = fig.add_subplot(grid[0:2, 1])
    names = [pretty(n) for n in FINDINGS]
    ax.barh(names, [report.probabilities[n] for n in FINDINGS], color="#4a78b5")
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), xlabel="P(finding)", title="finding analysis")
    ax.invert_yaxis()
    ax = fig.add_subplot(grid[0:2, 2:])
    ax.axis("off")
    verdict = f"Review: {report.review.verdict}"
    reasons = "\n".join(f"- {r}" for r in report.review.reasons[:4])
    forced = "".join(_wrap(line, 70) + "\n\n" for line in forced_lines(report))
    ax.text(
        0,
        1,
        forced + _wrap(report.text, 70) + "\n\n" + verdict + ("\n" + reasons if reasons else ""),
        va="top",
        fontsize=9,
        family="monospace",
        parse_math=False,
    )
    sub = grid[2, :].subgridspec(1, 8)
    for k, t in enumerate(_content_words(report, 8)):
        ax = fig.add_subplot(sub[0, k])
        ax.imshow(attention_overlay(report.image, report.attention[t]))
        ax.set_title(report.words[t], parse_math=False)
        ax.set(xticks=[], yticks=[])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(
        textwrap.fill(paragraph, width) if paragraph else "" for paragraph in text.split("\n")
    )


# ---------------------------------------------------------------------------------------------


def write_outputs(
    report: Report, out: str | Path, stem: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Write the chosen formats as out/<stem>.<format>, all or none; returns the paths written.

    `stem` may hold folders ("p1/image"): they are made inside `out`.
    """
    render = {
        "txt": lambda: to_text(report).encode("utf-8"),
        "json": lambda: to_json(report).encode("utf-8"),
        "html": lambda: to_html(report).encode("utf-8"),
        "png": lambda: to_png(report),
    }
    unknown = [fmt for fmt in formats if fmt not in render]
    if unknown:
        raise ValueError(f"formats: unknown format {unknown[0]!r}, expected some of {FORMATS}")
    base = Path(out) / stem
    contents = {base.with_name(f"{base.name}.{fmt}"): render[fmt]() for fmt in formats}
    base.parent.mkdir(parents=True, exist_ok=True)
    write_set_atomically(contents)
    return list(contents)
