"""One self-contained HTML report: tables, training curves, codebook figures, sample grids and
provenance (from every manifest.json). Images are embedded as base64 PNGs."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from lgvq.io import atomic_write_text


def _img(png: bytes, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def _md_table_to_html(md: str) -> str:
    out, rows = [], []
    for line in md.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if rows:
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>" +
                       "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body) +
                       "</table>")
            rows = []
        if line.startswith("# "):
            out.append(f"<h3>{html.escape(line[2:])}</h3>")
        elif line.strip() and not line.startswith("|---"):
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)


def _curves(results: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    for log in sorted(results.rglob("log.csv")):
        df = pd.read_csv(log)
        if df.empty or "step" not in df:
            continue
        fig, ax = plt.subplots(figsize=(5, 2.6))
        for col in [c for c in df.columns if c != "step"][:8]:
            ax.plot(df["step"], df[col], label=col)
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=6)
        ax.set_title(str(log.parent.relative_to(results)), fontsize=7)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        figs.append(_img(buf.getvalue(), f"training curve: {log.parent.relative_to(results)}"))
    return figs


def _example_cell(text: str) -> str:
    """A report cell: an image file is shown (small), anything else escaped."""
    if Path(text).suffix.lower() in (".png", ".jpg", ".jpeg") and Path(text).is_file():
        return (f'<img style="width:64px;image-rendering:pixelated" src="data:image/png;base64,'
                f'{base64.b64encode(Path(text).read_bytes()).decode()}"/>')
    return "" if Path(text).suffix.lower() in (".png", ".jpg", ".jpeg") else html.escape(text)


def _examples(results: Path, per_run: int = 4) -> list[str]:
    """Example predictions of the understanding heads (each task says which cells show them)."""
    from lgvq.downstream.registry import HEADS

    out = []
    for task in HEADS.names():
        records = sorted(results.glob(f"*/eval/{task}/*/*/seed*/metrics.json"))
        head = HEADS.get(task) if records else None
        for m in records:
            try:
                rec = json.loads(m.read_text())
            except json.JSONDecodeError:
                continue
            rows = ["<tr>" + "".join(f"<td>{_example_cell(c)}</td>" for c in head.example_cells(ex)) + "</tr>"
                    for ex in rec.get("examples", [])[:per_run]]
            if rows:
                out.append(f"<h4>{html.escape(task)}: {html.escape(str(m.parent.relative_to(results)))}</h4><table>"
                           + "".join(rows) + "</table>")
    return out


def build_report(results_dir: str | Path, tables_dir: str | Path, out_html: str | Path, *,
                 compute: dict[str, dict[str, float]] | None = None) -> Path:
    results, tables = Path(results_dir), Path(tables_dir)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>lgvq-bench report</title><style>"
             "body{font-family:sans-serif;max-width:1400px;margin:auto} table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:3px} figure{display:inline-block;margin:4px} img{max-width:640px}"
             "</style></head><body><h1>lgvq-bench report</h1>",
             "<p>Ours beside the paper's numbers. Paper numbers are the paper's (real data, Inception FID, CLIP); "
             "ours name their feature extractor, text encoder, image counts and seeds.</p><h2>Tables</h2>"]
    for md in sorted(tables.glob("*.md")):
        parts.append(_md_table_to_html(md.read_text()))
    parts.append("<h2>Training curves</h2>")
    parts += _curves(results)
    parts.append("<h2>Codebook usage and samples</h2>")
    for png in sorted(list(results.rglob("codebook*.png")) + list(results.rglob("samples*.png"))):
        parts.append(_img(png.read_bytes(), str(png.relative_to(results))))
    parts.append("<h2>Understanding heads: example predictions</h2>")
    parts += _examples(results)
    parts.append("<h2>Provenance</h2><table><tr><th>output</th><th>step</th><th>config hash</th><th>git</th>"
                 "<th>device</th><th>wall s</th><th>peak RSS MB</th></tr>")
    total: dict[str, float] = {}
    for m in sorted(results.rglob("*manifest.json")):
        try:
            d = json.loads(m.read_text())
        except json.JSONDecodeError:
            continue
        git = d.get("git", {})
        total[d.get("step", "?")] = total.get(d.get("step", "?"), 0.0) + float(d.get("wall_time_s", 0))
        parts.append(f"<tr><td>{html.escape(str(m.parent.relative_to(results)))}</td><td>{html.escape(str(d.get('step')))}</td>"
                     f"<td>{d.get('config_hash')}</td><td>{str(git.get('revision'))[:10]}{' (dirty)' if git.get('dirty') else ''}</td>"
                     f"<td>{html.escape(str(d.get('device', {}).get('cuda_device', 'cpu')))}</td>"
                     f"<td>{d.get('wall_time_s')}</td><td>{d.get('peak_rss_mb')}</td></tr>")
    parts.append("</table><h3>Wall time per step kind</h3><ul>" +
                 "".join(f"<li>{html.escape(k)}: {v:.0f} s</li>" for k, v in sorted(total.items())) + "</ul>")
    if compute:
        parts.append("<h3>Compute behind each table (device-hours)</h3><p>Wall time of every job a table's numbers "
                     "come from (its evaluations and the training and encoding of the tokenizers they evaluate), "
                     "from the manifests; a job shared by several tables counts for each.</p><table>"
                     "<tr><th>table</th><th>device-hours</th></tr>" +
                     "".join(f"<tr><td>{html.escape(t)}</td><td>" +
                             (", ".join(f"{h:.3f} h ({html.escape(d)})" for d, h in sorted(c.items())) or "—") +
                             "</td></tr>" for t, c in compute.items()) + "</table>")
    parts.append("</body></html>")
    atomic_write_text(out_html, "\n".join(parts))
    return Path(out_html)
