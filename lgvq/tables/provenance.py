"""The report's provenance section, folded away in <details>: what every job behind the tables ran
as (git revision, config hash, package versions, precision, device, wall time, memory), read from the
manifests the plan names, with a one-line summary of what differs between them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from lgvq.manifest import distinct_jobs, seconds_by_step

FLAGS = ("tf32", "channels_last", "compile", "cudnn_benchmark")  # execution switches a manifest records


def _esc(x: object) -> str:
    return html.escape(str(x))


def precision_of(manifest: dict[str, Any]) -> str:
    """e.g. "fp32", "bf16-autocast, tf32": the precision and every execution switch that was on."""
    ex = manifest.get("execution") or {}
    return ", ".join([str(ex.get("precision", "fp32"))] + [f for f in FLAGS if ex.get(f)])


def device_model(manifest: dict[str, Any]) -> str | None:
    """The device a job's numbers were computed on: the GPU it saw, else its CPU model; None for a manifest
    written before the CPU model was recorded. fp32 training repeats bit for bit on one model, not across
    models (benchmarks/results/cross_cpu_determinism.json), so this is what a comparison must hold fixed."""
    device = manifest.get("device") or {}
    return device.get("cuda_device") or device.get("cpu_model") or None


def _versions(manifest: dict[str, Any]) -> str:
    v = manifest.get("versions") or {}
    return ", ".join(f"{k} {v[k]}" for k in ("torch", "lgvq", "numpy") if v.get(k))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def provenance_html(manifests: tuple[Path, ...], results: Path, compute: dict[str, dict[str, float]]) -> str:
    rows, seen, loaded = [], {"git": set(), "versions": set(), "precision": set(), "device": set()}, []
    missing = 0
    for m in sorted(manifests):
        if not m.is_file():
            missing += 1
            continue
        try:
            d = json.loads(m.read_text())
        except json.JSONDecodeError:
            rows.append(f"<tr><td>{_esc(_rel(m.parent, results))}</td><td colspan='8'>unreadable manifest</td></tr>")
            continue
        git = d.get("git") or {}
        rev = f"{str(git.get('revision'))[:10]}{' (dirty)' if git.get('dirty') else ''}"
        seen["git"].add(rev)
        seen["versions"].add(_versions(d))
        seen["precision"].add(precision_of(d))
        step = str(d.get("step", "?"))
        loaded.append(d)
        device = device_model(d) or "cpu (model not recorded)"
        seen["device"].add(device)
        cells = (_rel(m.parent, results), step, d.get("config_hash"), rev, precision_of(d), device, _versions(d),
                 d.get("wall_time_s"), d.get("peak_rss_mb"))
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    # each job once: a reconstruction evaluation writes its manifest beside its codebook record too
    total = {step: row["seconds"] for step, row in seconds_by_step(distinct_jobs(loaded)).items()}
    summary = (f"{len(rows)} job manifests; git {', '.join(sorted(seen['git'])) or '—'}; precision "
               f"{', '.join(sorted(seen['precision'])) or '—'}; device {', '.join(sorted(seen['device'])) or '—'}; "
               f"{'; '.join(sorted(seen['versions'])) or '—'}"
               + (f"; {missing} listed jobs have no manifest (not run)" if missing else ""))
    out = [f"<p>{_esc(summary)}</p>", "<details><summary>Every job's manifest</summary><table><tr><th>job</th>"
           "<th>step</th><th>config hash</th><th>git</th><th>precision</th><th>device</th><th>versions</th>"
           "<th>wall s</th><th>peak RSS MB</th></tr>", *rows, "</table></details>",
           "<details><summary>Wall time per step kind</summary><ul>",
           *(f"<li>{_esc(k)}: {v:.0f} s</li>" for k, v in sorted(total.items())), "</ul></details>"]
    if compute:
        out += ["<details><summary>Compute behind each table (device-hours)</summary><p>Wall time of every job a "
                "table's numbers come from (its evaluations and the training and encoding of the tokenizers they "
                "evaluate), from the manifests; a job shared by several tables counts for each.</p><table>"
                "<tr><th>table</th><th>device-hours</th></tr>",
                *(f"<tr><td>{_esc(t)}</td><td>" + (", ".join(f"{h:.3f} h ({_esc(dev)})" for dev, h in sorted(c.items()))
                                                   or "—") + "</td></tr>" for t, c in compute.items()),
                "</table></details>"]
    return "\n".join(out)
