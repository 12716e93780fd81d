"""One self-contained HTML report, the place to look first: a contents list; the tables in the paper's
order (their baseline / ceiling rows set apart) each with a figure of base vs +LG; training curves
overlaid per tokenizer; reconstructions, codebooks and samples side by side at a readable size;
example predictions; provenance folded away. Every file it shows comes from `ReportInputs` (named by
the plan, never globbed); images are embedded (base64), small pictures upscaled nearest-neighbour
by the browser (`image-rendering: pixelated`), so the file stays small.
"""

from __future__ import annotations

import base64
import html
import json
import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from lgvq.io import atomic_write_text
from lgvq.tables import figures
from lgvq.tables.names import display_name
from lgvq.tables.paper import table_spec
from lgvq.tables.report_inputs import CurveGroup, ExampleGroup, PictureGroup, ReportInputs, SampleGroup

MIN_IMAGE_PX = 128       # one image of a grid is shown at least this wide
MIN_CODEBOOK_PX = 256    # a codebook picture at least this wide
CSS = (
    "body{font:14px/1.45 system-ui,sans-serif;max-width:1500px;margin:0 auto;padding:0 16px;color:#222}"
    "h1{margin:.6em 0 .2em}h2{border-bottom:2px solid #ddd;margin-top:1.8em}h3{margin:1.4em 0 .3em}"
    "nav{background:#f6f6f8;padding:6px 14px;border-radius:6px;columns:3;font-size:13px}"
    "nav ul{margin:0;padding-left:16px}"
    "table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;"
    "vertical-align:top}th{background:#f0f0f3}tr.baseline td,tr.ceiling td{background:#fafafa;font-style:italic}"
    "tr.baseline td:first-child,tr.ceiling td:first-child{color:#666}tr.first-special td{border-top:2px solid #999}"
    ".paper{color:#888}.notes{font-size:12px;color:#444}.notes li{margin:1px 0}.caption{font-size:12px;color:#555}"
    "img.px{image-rendering:pixelated;max-width:100%}"
    ".cards{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}"
    ".card{border:1px solid #e3e3e3;border-radius:6px;padding:6px}.card h4{margin:0 0 4px;font-size:13px}"
    ".missing{color:#a33;font-size:12px}details{margin:6px 0}summary{cursor:pointer;font-weight:600}"
    "figure{margin:6px 0}figcaption{font-size:12px;color:#555}"
)


def paper_order(table_ids: list[str]) -> list[str]:
    """The paper's tables by number (Table 1, 2, ...), then its figures (Fig. 7), then the rest
    (dataset statistics, plug-in tasks' own tables) in the order given."""
    def key(item: tuple[int, str]) -> tuple[int, float, int]:
        i, table = item
        try:
            kind, _, n = table_spec(table).number.partition(" ")
            return ({"Table": 0, "Fig.": 1}[kind], float(n), i)
        except (KeyError, ValueError):
            return (2, 0.0, i)
    return [t for _, t in sorted(enumerate(table_ids), key=key)]


def _esc(x: object) -> str:
    return html.escape(str(x))


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header; None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return struct.unpack(">II", data[16:24])


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _figure(png: bytes, caption: str, alt: str) -> str:
    return (f'<figure><img alt="{_esc(alt)}" src="{_data_uri(png)}"/>'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _picture(path: Path, alt: str, *, image_px: int | None = None, min_width: int = MIN_CODEBOOK_PX) -> str:
    """A small PNG from disk shown upscaled nearest-neighbour: each `image_px` image of a grid to at least
    MIN_IMAGE_PX, or (no `image_px`) the whole picture to at least `min_width`."""
    if not path.is_file():
        return f'<p class="missing">missing: {_esc(path)}</p>'
    data = path.read_bytes()
    size = png_size(data)
    if size is None:
        return f'<p class="missing">not a PNG: {_esc(path)}</p>'
    scale = max(1, math.ceil(MIN_IMAGE_PX / image_px)) if image_px else max(1, math.ceil(min_width / size[0]))
    return (f'<img class="px" alt="{_esc(alt)}" title="{_esc(alt)}" width="{size[0] * scale}" '
            f'height="{size[1] * scale}" '
            f'src="{_data_uri(data)}"/>')


# -- tables -------------------------------------------------------------------------------------------

def _row_class(label: str) -> str:
    return next((k for k in figures.SPECIAL_KINDS if label.startswith(f"{k}:")), "")


def _cell_html(text: str) -> str:
    """A markdown cell: ours first, the paper's number after ` · `, greyed."""
    parts = [p.strip() for p in text.split(" · ")]
    return " · ".join(f'<span class="paper">{_esc(p)}</span>' if p.startswith("paper ") else _esc(p) for p in parts)


def md_table_html(md: str) -> tuple[str, str]:
    """(title, body) of a table's markdown: its pipe table as HTML (baseline / ceiling rows set apart)
    and its caption and notes as text."""
    title, body, rows, notes = "", [], [], []

    def flush() -> None:
        if not rows:
            return
        head, *data = rows
        out, seen_special = ["<table><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in head) + "</tr>"], False
        for r in data:
            kind = _row_class(r[0])
            cls = f"{kind} first-special" if kind and not seen_special else kind
            seen_special = seen_special or bool(kind)
            out.append(f'<tr class="{cls}">' if cls else "<tr>")
            out.append(f"<td>{_esc(r[0])}</td>" + "".join(f"<td>{_cell_html(c)}</td>" for c in r[1:]) + "</tr>")
        body.append("".join(out) + "</table>")
        rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.strip():
            notes.append(line.strip().lstrip("- "))
    flush()
    caption, *rest = notes or [""]
    body.insert(0, f'<p class="caption">{_esc(caption)}</p>')
    if rest:
        body.append('<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in rest) + "</ul>")
    return title, "\n".join(body)


def _table_section(table_id: str, md: Path, csv: Path) -> str:
    anchor = f"table-{table_id}"
    if not md.is_file():
        return f'<h3 id="{anchor}">{_esc(table_id)}</h3><p class="missing">not built: {_esc(md)}</p>'
    title, body = md_table_html(md.read_text())
    parts = [f'<h3 id="{anchor}">{_esc(title or table_id)}</h3>', body]
    if csv.is_file() and table_id != "dataset_stats":
        made = figures.table_figure(pd.read_csv(csv))
        if made is not None:
            png, with_delta = made
            caption = ("Bars: ours, mean over seeds, error bars ± sample std (n ≥ 2); dashed lines: the table's "
                       "baseline (grey) and ceiling (green) rows.")
            caption += (" Lower strips: Δ = variant − the same tokenizer's base, paired by seed, with its 95 % "
                        "t-interval; a filled marker where the interval excludes 0, hollow where it does not, where "
                        "every pair differed by the same amount (zero width), or where fewer than 2 seed pairs give "
                        "no interval." if with_delta else
                        " No Δ intervals in this table (fewer than 2 seeds, or a table written before they existed).")
            parts.append(_figure(png, caption, f"{table_id}: base vs variants"))
    return "\n".join(parts)


# -- curves, pictures, samples, examples -------------------------------------------------------------

def _curves_section(group: CurveGroup) -> str:
    logs: dict[tuple[str, str], list[pd.DataFrame]] = {}
    seeds: dict[tuple[str, str], list[int]] = {}
    missing = []
    for run in group.runs:
        if not run.log.is_file():
            missing.append(run.log)
            continue
        df = pd.read_csv(run.log)
        if "step" not in df or df.empty:
            continue
        logs.setdefault((run.panel, run.line), []).append(df)
        seeds.setdefault((run.panel, run.line), []).append(run.seed)
    out = [f'<h3 id="{_esc(group.id)}">{_esc(group.title)}</h3>']
    lines = list(dict.fromkeys(line for _, line in logs))
    colours = {line: f"C{i}" for i, line in enumerate(lines)}
    panels = []
    for panel in dict.fromkeys(p for p, _ in logs):
        columns = figures.ordered_columns(list(dict.fromkeys(
            c for (p, _), frames in logs.items() if p == panel for d in frames for c in d.columns if c != "step")))
        for column in columns:
            bands = {line: b for (p, line), frames in logs.items() if p == panel
                     and (b := figures.seed_band(frames, column)) is not None}
            if bands:
                title = column + (" (validation)" if figures.is_validation(column) else "")
                panels.append((f"{panel} · {title}" if panel else title, bands))
    if panels:
        n = sorted({len(s) for s in seeds.values()})
        out.append(_figure(figures.curves_figure(panels, colours),
                           f"Lines: mean over seeds ({'/'.join(map(str, n))} per line); band: min–max over seeds. "
                           "Each value is the term at its log step (lgvq.train.loop), not a window mean; "
                           "a '(validation)' panel is the validation loss beside its training term.",
                           f"training curves: {group.title}"))
    out += [f'<p class="missing">missing log: {_esc(p)}</p>' for p in missing]
    return "\n".join(out)


def _code_counts(codes: Path, size: int | None, chunk: int = 4096) -> np.ndarray:
    """How often each code occurs in a run's test codes, read `chunk` images at a time."""
    from lgvq.arrays import RowArray

    arr = RowArray.open_npy(codes)  # read by rows: a mapped file would stay in the report job's RSS
    counts = np.zeros(size or 0, dtype=np.int64)
    for i in range(0, len(arr), chunk):
        part = np.bincount(np.asarray(arr[i : i + chunk]).reshape(-1).astype(np.int64), minlength=len(counts))
        counts = np.pad(counts, (0, len(part) - len(counts))) + part if len(part) > len(counts) else counts + part
    return counts


def _pictures_section(group: PictureGroup) -> str:
    out = [f'<h3 id="{_esc(group.id)}">{_esc(group.title)}</h3>', '<div class="cards">']
    usage = []
    for run in group.runs:
        grid = _picture(run.reconstructions, f"{run.label}: val originals over reconstructions",
                        image_px=group.image_size)
        out.append(f'<div class="card"><h4>{_esc(run.label)} (seed {run.seed})</h4><div class="cards">'
                   f'<div>{grid}'
                   '<div class="caption">validation images (top) over their reconstructions (bottom)</div></div>'
                   f'<div>{_picture(run.codebook, f"{run.label}: codebook")}'
                   '<div class="caption">every code decoded as a 1×1 latent (Fig. 7)</div></div></div></div>')
        if run.codes.is_file():
            size = np.load(run.codebook_vectors, mmap_mode="r").shape[0] if run.codebook_vectors.is_file() else None
            usage.append((run.label, _code_counts(run.codes, size)))
    out.append("</div>")
    if usage:
        out.append(_figure(figures.usage_figure(usage), "Code frequencies on the test split, sorted (one line per "
                           "run); x: rank over the codebook size, so the line ends where the used codes end.",
                           f"codebook usage: {group.title}"))
    return "\n".join(out)


def _samples_section(group: SampleGroup) -> str:
    cards = [f'<div class="card"><h4>{_esc(g.label)} (seed {g.seed})</h4>'
             f'{_picture(g.path, f"{g.label}: samples", image_px=group.image_size)}</div>' for g in group.grids]
    return f'<h3 id="{_esc(group.id)}">{_esc(group.title)}</h3><div class="cards">{"".join(cards)}</div>'


def _example_cell(text: str, image_px: int) -> str:
    path = Path(text)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return _picture(path, path.name, image_px=image_px) if path.suffix.lower() == ".png" else _esc(path.name)
    return _esc(text)


def _examples_section(group: ExampleGroup, per_run: int = 3) -> str:
    from lgvq.downstream.registry import HEADS

    head = HEADS.get(group.task)
    rows, missing = [], []
    for run in group.runs:
        if not run.metrics.is_file():
            missing.append(run.metrics)
            continue
        try:
            examples = json.loads(run.metrics.read_text()).get("examples", [])[:per_run]
        except json.JSONDecodeError:
            missing.append(run.metrics)
            continue
        for k, ex in enumerate(examples):
            first = f'<td rowspan="{len(examples)}">{_esc(run.label)}</td>' if k == 0 else ""
            rows.append(f"<tr>{first}" + "".join(f"<td>{_example_cell(str(c), group.image_size)}</td>"
                                                 for c in head.example_cells(ex)) + "</tr>")
    out = [f'<h3 id="{_esc(group.id)}">{_esc(group.title)}</h3>']
    if rows:
        out.append("<table>" + "".join(rows) + "</table>")
    out += [f'<p class="missing">missing or unreadable: {_esc(p)}</p>' for p in missing]
    return "\n".join(out)


def _provenance(inputs: ReportInputs) -> str:
    from lgvq.tables.provenance import provenance_html

    return provenance_html(inputs.manifests, inputs.results_dir, inputs.compute)


# -- the page -----------------------------------------------------------------------------------------

def render_report(inputs: ReportInputs, out_html: str | Path) -> Path:
    order = paper_order([t.id for t in inputs.tables])
    by_id = {t.id: t for t in inputs.tables}
    sections: list[tuple[str, str, list[tuple[str, str]], list[str]]] = []  # (id, title, contents, bodies)
    titles = []
    for t in order:
        try:
            spec = table_spec(t)
            titles.append((f"table-{t}", f"{spec.number}: {t}" if spec.number != "—" else t))
        except KeyError:
            titles.append((f"table-{t}", t))
    sections.append(("tables", "Tables", titles, [_table_section(t, by_id[t].md, by_id[t].csv) for t in order]))
    groups_of = (("curves", "Training curves", inputs.curves, _curves_section),
                 ("pictures", "Reconstructions and codebooks", inputs.pictures, _pictures_section),
                 ("samples", "Second-stage samples", inputs.samples, _samples_section),
                 ("examples", "Understanding heads: example predictions", inputs.examples, _examples_section))
    for sid, title, groups, render in groups_of:
        if groups:
            sections.append((sid, title, [(g.id, g.title) for g in groups], [render(g) for g in groups]))
    sections.append(("provenance", "Provenance", [], [_provenance(inputs)]))
    nav = "".join(f'<li><a href="#{sid}">{_esc(title)}</a>' + (
        "<ul>" + "".join(f'<li><a href="#{_esc(a)}">{_esc(b)}</a></li>' for a, b in items) + "</ul>" if items else "")
        + "</li>" for sid, title, items, _ in sections)
    page = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lgvq-bench report: "
            f"{_esc(inputs.experiment)}</title><style>{CSS}</style></head><body>",
            f"<h1>lgvq-bench report: experiment <code>{_esc(inputs.experiment)}</code></h1>",
            "<p>Ours beside the paper's numbers. A paper number (greyed, <span class='paper'>paper …</span>) is the "
            "paper's (real data, Inception FID, CLIP text encoder), never computed here; ours name their feature "
            "extractor, text encoder, image counts and seeds in each table's notes. Rows: "
            f"{_esc(display_name('vqgan'))}, {_esc(display_name('vqgan', 'lg'))}, … (lgvq.tables.names); "
            "<i>baseline:</i> and <i>ceiling:</i> rows are trivial references, not models.</p>",
            f'<nav id="contents"><b>Contents</b><ul>{nav}</ul></nav>']
    for sid, title, _, bodies in sections:
        page.append(f'<h2 id="{sid}">{_esc(title)}</h2>')
        page += bodies
    page.append("</body></html>")
    atomic_write_text(out_html, "\n".join(page))
    return Path(out_html)

