"""Regenerate the README's results section of a finished run of one profile (<results_dir>/tables/*.csv).

    python scripts/readme_results.py [--config config/config.yaml] [--results results] [--wall-time "19 min"]

The default profile's section sits between `<!-- results:begin -->` and `<!-- results:end -->`; another
profile's (config/medium.yaml: name `medium`) between `<!-- results-medium:begin -->` and its end marker.

Writes only our numbers on the embedded data (mean ± std over seeds, n), Δ(variant − base) paired by
seed with its 95 % interval (* where it excludes 0), and the tables' baseline / ceiling rows;
the paper's numbers stay in results/tables/*.md beside ours.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from lgvq.manifest import distinct_jobs
from lgvq.tables.build import delta_text
from lgvq.tables.targets import verdicts

ROOT = Path(__file__).resolve().parent.parent


def markers(profile: str) -> tuple[str, str]:
    """The README's begin/end markers of a profile's results section (the default's has no name in it)."""
    tag = "results" if profile == "default" else f"results-{profile}"
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


BEGIN, END = markers("default")
TABLES = ("reconstruction", "ablation", "masked_word", "word_code_similarity", "codebook_usage", "text_to_image",
          "semantic_synthesis", "unconditional", "completion", "captioning", "vqa", "grounding", "dose_response")


def fmt(v: float, metric: str) -> str:
    return "" if v is None or math.isnan(v) else (f"{v:.4f}" if "MSE" in metric else f"{v:.2f}")


def jobs_of(results: Path) -> list[dict]:
    """Every job's manifest once (lgvq.manifest.distinct_jobs), the tables' own left out."""
    return distinct_jobs(json.loads(m.read_text()) for m in results.rglob("manifest.json") if "tables" not in m.parts)


def job_minutes(results: Path) -> tuple[float, int]:
    """Sum of the wall times recorded by every job's manifest (minutes) and the number of jobs."""
    jobs = jobs_of(results)
    return sum(float(j.get("wall_time_s", 0.0)) for j in jobs) / 60, len(jobs)


def later_jobs(results: Path, revision: str) -> str:
    """A sentence naming the jobs whose manifests were written at another git revision than `revision` (jobs
    re-run after the run, e.g. to add a metric), by kind, and how many of them only re-read a finished
    checkpoint (manifest `training`: resumed at its last step), whose wall time is not the training's. '' if none."""
    later: dict[str, Counter] = {}
    for j in jobs_of(results):
        rev = str((j.get("git") or {}).get("revision", ""))[:7]
        if rev and rev != revision[:7]:
            training = j.get("training") or {}
            reread = bool(training) and training.get("resumed_at_step") == training.get("steps")
            later.setdefault(rev, Counter())[(j.get("step", "?"), reread)] += 1
    if not later:
        return ""
    parts = []
    for rev, kinds in sorted(later.items()):
        jobs = ", ".join(f"{n} {step}" + (" re-reading trained checkpoints" if reread else "")
                         for (step, reread), n in sorted(kinds.items()))
        parts.append(f"at git {rev}: {jobs}")
    return ("Jobs re-run after the run, " + "; ".join(parts) + ". A job that re-read its checkpoint trained nothing: "
            "its wall time above is the re-evaluation's.")


def precisions(results: Path) -> dict[str, dict[str, int]]:
    """Per kind of job (the manifest's `step`): how many ran at each precision (`execution.precision`)."""
    out: dict[str, dict[str, int]] = {}
    for j in jobs_of(results):
        p = str((j.get("execution") or {}).get("precision", "fp32"))
        kind = out.setdefault(str(j.get("step", "?")), {})
        kind[p] = kind.get(p, 0) + 1
    return out


def precision_text(results: Path) -> str:
    """'bf16 autocast: tokenizer/train (40) ...; fp32: everything else' from the manifests."""
    groups: dict[str, list[str]] = {}
    for step, counts in sorted(precisions(results).items()):
        for p, n in counts.items():
            groups.setdefault(p, []).append(f"{step} ({n})")
    if list(groups) == ["fp32"]:
        return "every job fp32"
    return "; ".join(f"{p}: {', '.join(steps)}" for p, steps in sorted(groups.items()))


def targets_text(results: Path) -> list[str]:
    """Per table: how many (model row, metric) pairs clear their strongest baseline by more than the seed
    spread (lgvq/tables/targets.py), and which do not."""
    out = ["**Against the baselines** (a row clears a metric's strongest `baseline:` row when it is better by more "
           "than the larger seed standard deviation of the two; lgvq/tables/targets.py):", "",
           "| table | clear | better on one seed (spread unknown) | do not clear (row metric: ours vs baseline) |",
           "|---|---|---|---|"]
    for table in TABLES:
        csv = results / "tables" / f"{table}.csv"
        if not csv.is_file():
            continue
        vs = verdicts(pd.read_csv(csv))
        if not vs:
            continue
        one_seed = [v for v in vs if v.verdict.startswith("spread")]
        failing = [v for v in vs if v.verdict == "does not clear"]
        listed = "; ".join(f"{v.row} {v.metric}: {v.mean:.2f} vs {v.baseline_row} {v.baseline_mean:.2f}"
                           for v in failing) or "—"
        out.append(f"| {table} | {sum(v.verdict == 'clears' for v in vs)} of {len(vs)} | {len(one_seed)} | {listed} |")
    return out + [""]


def section(results: Path, wall: str | None, config: str = "config/config.yaml", profile: str = "default",
            heading: str = "##") -> str:
    begin, end = markers(profile)
    out = [begin, "", f"{heading} Results of the {profile} run (embedded data, ours only)", ""]
    manifests = sorted((results / "shapes" / "tokenizers").rglob("manifest.json"))
    # a training job's manifest (it names the text encoder); an encoding job's does not
    manifest = next((p for p in manifests if json.loads(p.read_text()).get("text_encoder")), next(iter(manifests), None))
    if manifest:
        m = json.loads(manifest.read_text())
        out.append(f"Config `{config}` at git {str(m['git']['revision'])[:10]}; text encoder "
                   f"`{(m.get('text_encoder') or {}).get('name', '?')}`; {m.get('steps')} steps per tokenizer; "
                   f"CPU ({m['device'].get('cpu_count')} cores)." + (f" Whole DAG wall time: {wall}." if wall else ""))
        minutes, jobs = job_minutes(results)
        out.append("")
        rerun = later_jobs(results, str(m["git"]["revision"]))
        out.append(f"Compute: the {jobs} jobs' manifests sum to {minutes:.0f} job-minutes on the CPU (each job's own "
                   "wall time; jobs that share the cores overlap, so this is more than the whole DAG's wall time"
                   + ("; a job re-run after the run counts with its re-run's time, next line" if rerun else "") + ").")
        if rerun:
            out += ["", rerun]
        out.append("")
        out.append(f"Precision, from each job's manifest (`execution.precision`): {precision_text(results)}.")
        out.append("")
    for table in TABLES:
        if not (results / "tables" / f"{table}.csv").is_file():  # a table this config does not build
            continue
        df = pd.read_csv(results / "tables" / f"{table}.csv")
        df = df[df["n_seeds"] > 0]
        if df.empty:
            continue
        rel = f"{results.name}/tables" if results.name != "results" else "results/tables"
        out += [f"**{table}** (`{rel}/{table}.md` has the paper's numbers beside these)", ""]
        metrics = list(dict.fromkeys(df["metric"]))
        out += ["| model | " + " | ".join(f"{m} {'↓' if df[df.metric == m].direction.iloc[0] == 'lower' else '↑'}"
                                          for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for row in dict.fromkeys(df["row"]):
            cells = []
            for m in metrics:
                c = df[(df.row == row) & (df.metric == m)]
                if c.empty:
                    cells.append("—")
                    continue
                r = c.iloc[0]
                s = f"{fmt(r.ours_mean, m)} ± {fmt(r.ours_std, m)} (n={r.n_seeds})"
                if not math.isnan(r.delta_vs_base):
                    s += ", " + delta_text(r, m)
                cells.append(s)
            out.append(f"| {row} | " + " | ".join(cells) + " |")
        out.append("")
    out += targets_text(results)
    out.append(end)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/config.yaml", help="the profile the run used (its name picks the section)")
    ap.add_argument("--results", default=None, help="the run's results_dir (default: the config's, under the repository)")
    ap.add_argument("--wall-time", default=None)
    args = ap.parse_args()
    from lgvq.config import load_config

    cfg = load_config(ROOT / args.config)
    results = Path(args.results) if args.results else ROOT / cfg["results_dir"]
    readme = ROOT / "README.md"
    text = readme.read_text()
    profile = cfg["name"]
    new = section(results, args.wall_time, args.config, profile, "##" if profile == "default" else "###")
    begin, end = markers(profile)
    if begin in text:
        text = text[: text.index(begin)] + new + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + new + "\n"
    readme.write_text(text)


if __name__ == "__main__":
    main()
