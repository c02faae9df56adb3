"""One self-contained HTML page for a set of generated reports: every film beside its generated and reference
report and its word heatmaps, and a metrics table on top. Every image path is relative to the page's folder (films
are copied next to it), so the folder can be zipped, moved and opened offline."""

from __future__ import annotations

import html
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..data.atomic import replaced_file, write_text_whole

PAGE_NAME = "index.html"
FILM_DIR = "films"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1220px;
       color: #1d1d1f; background: #fff; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
p.note { color: #555; font-size: 0.92em; max-width: 75em; }
table.metrics { border-collapse: collapse; margin: 12px 0 28px; font-size: 0.95em; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
table.metrics thead th { background: #f0f0f3; }
table.metrics td.best { font-weight: bold; }
section.film { display: grid; grid-template-columns: 200px 1fr; gap: 10px 18px; border-top: 1px solid #ddd;
               padding: 14px 0; }
section.film div.films img { width: 200px; height: auto; display: block; border: 1px solid #ccc; margin-bottom: 4px; }
section.film div.text { font-size: 0.95em; }
section.film div.text h2 { font-size: 1.05em; margin: 0 0 6px; word-break: break-all; }
section.film dl { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; }
section.film dt { font-weight: 600; }
section.film dd { margin: 0; }
section.film figure { grid-column: 1 / -1; margin: 0; }
section.film figure img { width: 100%; height: auto; display: block; border: 1px solid #ccc; }
section.film figure div.words { display: grid; font-size: 0.9em; text-align: center; font-weight: 600; }
section.film figcaption { font-size: 0.85em; color: #555; margin-top: 2px; }
span.ok { color: #1a7f37; font-weight: 600; }
span.wrong { color: #c62828; font-weight: 600; }
"""


def relative_url(path: str | os.PathLike, page_dir: Path) -> str:
    """``path`` as a URL relative to ``page_dir`` (POSIX separators, percent-encoded)."""
    return quote(Path(os.path.relpath(Path(path).resolve(), page_dir.resolve())).as_posix())


def copy_films(records: Sequence[dict[str, Any]], page_dir: Path) -> list[list[Path]]:
    """Copy every record's ``images`` into ``<page_dir>/films/`` (so the page does not point outside its folder)."""
    film_dir = page_dir / FILM_DIR
    film_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for record in records:
        targets = []
        for image in record["images"]:
            target = film_dir / Path(image).name
            if Path(image).resolve() != target.resolve():
                with replaced_file(target) as partial:
                    shutil.copyfile(image, partial)
            targets.append(target)
        copied.append(targets)
    return copied


def metrics_table_html(header: Sequence[str], rows: Sequence[Sequence[str]], best: Sequence[set[int]] = ()) -> str:
    """An HTML table; ``best[i]`` holds the column indices of row ``i`` to set in bold."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for i, row in enumerate(rows):
        marks = best[i] if i < len(best) else set()
        cells = "".join(
            f"<td{' class=best' if j in marks else ''}>{html.escape(cell)}</td>" for j, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _mark(correct: bool | None) -> str:
    if correct is None:
        return ""
    return ' <span class="ok">&#10003;</span>' if correct else ' <span class="wrong">&#10007;</span>'


def film_section(record: dict[str, Any], films: Sequence[Path], page_dir: Path) -> str:
    """One test film: its image(s), generated and reference report (slot marks when given), and below them the
    heatmap strip at full width with its key words under their panels."""
    images = "".join(
        f'<img class="film" src="{relative_url(f, page_dir)}" alt="film {html.escape(f.name)}">' for f in films
    )
    slots = record.get("slots_correct") or {}
    marks = "".join(f"{html.escape(name)}{_mark(ok)} &nbsp; " for name, ok in slots.items())
    text = (
        f'<div class="text"><h2>{html.escape(str(record["id"]))}</h2><dl>'
        f'<dt>Generated</dt><dd class="generated">{html.escape(record["prediction"])}</dd>'
        f'<dt>Reference</dt><dd class="reference">{html.escape(record.get("reference", ""))}</dd>'
        + (f'<dt>Slots</dt><dd class="slots">{marks}</dd>' if marks else "")
        + "</dl></div>"
    )
    figure = ""
    if record.get("heatmap"):
        words = list(record.get("heatmap_words", []))
        labels = "".join(f"<span>{html.escape(word)}</span>" for word in words)
        columns = f"repeat({max(1, len(words))}, 1fr)"
        figure = (
            f'<figure><img class="heatmap" src="{relative_url(record["heatmap"], page_dir)}" '
            f'alt="cross-attention heatmaps of {html.escape(", ".join(words))}">'
            f'<div class="words" style="grid-template-columns: {columns}">{labels}</div>'
            "<figcaption>Where the decoder looked (last layer's cross-attention, averaged over heads; red = "
            "most) while writing each key word of the generated report.</figcaption></figure>"
        )
    return (
        f'<section class="film" id="{html.escape(str(record["id"]))}"><div class="films">{images}</div>'
        f"{text}{figure}</section>"
    )


def write_report_page(
    page_dir: str | os.PathLike,
    records: Sequence[dict[str, Any]],
    table: str,
    *,
    title: str = "Generated reports",
    notes: Sequence[str] = (),
) -> Path:
    """Write ``<page_dir>/index.html`` (films copied to ``<page_dir>/films``); returns the page's path.

    ``records``: ``{"id", "images", "prediction", "reference"}`` and optionally ``"heatmap"`` (a PNG path),
    ``"heatmap_words"`` and ``"slots_correct"`` (``{slot: bool}``). ``table``: HTML of the metrics table
    (:func:`metrics_table_html`)."""
    page_dir = Path(page_dir)
    page_dir.mkdir(parents=True, exist_ok=True)
    films = copy_films(records, page_dir)
    sections = "\n".join(film_section(record, paths, page_dir) for record, paths in zip(records, films))
    note_html = "".join(f'<p class="note">{html.escape(note)}</p>' for note in notes)
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{note_html}\n{table}\n"
        f"<h1>Test films ({len(records)})</h1>\n{sections}\n</body></html>\n"
    )
    path = page_dir / PAGE_NAME
    write_text_whole(path, page)
    return path


__all__ = ["PAGE_NAME", "copy_films", "film_section", "metrics_table_html", "relative_url", "write_report_page"]
