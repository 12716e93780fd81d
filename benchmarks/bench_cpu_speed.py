"""CPU speed of the default profile: bf16 autocast vs fp32 per step, and per-job start-up.

1. Step time, fp32 vs CPU bf16 autocast (`cpu_bf16: on`), measured in the same run, interleaved
   (fp32, bf16, fp32, bf16, ...) and reported as medians: a default-size tokenizer step (VQ-GAN of
   config/config.yaml, discriminator on), a stage-2 step (CodeGPT at stage2's sizes on an 8x8 grid)
   and a head step (the VQA head at downstream's sizes). `speedup` = fp32 / bf16 seconds per step.
   `cpu_bf16_units` says whether this CPU has the bf16 matrix units `cpu_bf16: auto` looks for.
2. Start-up of each job kind: a fresh interpreter importing what the job imports at run time, with
   the imports before this change (torchvision for the PNG grids and the GIoU loss) and after,
   interleaved, medians. Captioning and VQA still import transformers (their GPT-2) and VQA nltk
   (WUPS): reported as they are, unchanged.

    python benchmarks/bench_cpu_speed.py --out benchmarks/results/cpu_speed.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.config import load_config  # noqa: E402
from lgvq.downstream.frontend import CodeFrontEnd  # noqa: E402
from lgvq.downstream.task import HeadTask  # noqa: E402
from lgvq.downstream.vqa import VQAModel  # noqa: E402
from lgvq.io import atomic_write_json  # noqa: E402
from lgvq.manifest import device_info, package_versions  # noqa: E402
from lgvq.stage2.gpt import CodeGPT  # noqa: E402
from lgvq.tokenizers.registry import build_tokenizer  # noqa: E402
from lgvq.train.precision import cpu_has_bf16_units  # noqa: E402
from lgvq.train.tokenizer_task import TokenizerTask  # noqa: E402

SETTINGS = ("off", "on")  # fp32, bf16


def _default_config() -> dict:
    return load_config(ROOT / "config" / "config.yaml")  # validated: the schema's defaults filled in


def tokenizer_step(cfg: dict, setting: str) -> Callable[[int], None]:
    entry = cfg["tokenizers"]["vqgan"]
    ds = next(iter(cfg["datasets"].values()))
    torch.manual_seed(0)
    model = build_tokenizer(entry["class"], dict(entry["params"]), image_size=ds["image_size"])
    task = TokenizerTask(model, None, lr=2e-4, betas=(0.5, 0.9), cpu_bf16=setting)
    batch = {"image": torch.rand(cfg["train"]["batch_size"], 3, ds["image_size"], ds["image_size"]) * 2 - 1}
    disc_start = entry["params"]["disc_start"]
    return lambda i: task.train_step(batch, disc_start + i)  # past disc_start: the adversarial step runs too


def stage2_step(cfg: dict, setting: str) -> Callable[[int], None]:
    s = cfg["stage2"]
    n_codes, grid = cfg["tokenizers"]["vqgan"]["params"]["n_embed"], 8
    torch.manual_seed(0)
    model = CodeGPT(n_codes, grid * grid, width=s["width"], layers=s["layers"], heads=s["heads"])
    task = HeadTask(model, lambda m, b: {"ce": m.loss(b)}, lr=s["lr"], cpu_bf16=setting)
    codes = torch.randint(0, n_codes, (s["batch_size"], grid * grid), generator=torch.Generator().manual_seed(0))
    return lambda i: task.train_step(codes, i)


def head_step(cfg: dict, setting: str) -> Callable[[int], None]:
    d = cfg["downstream"]
    p = cfg["tokenizers"]["vqgan"]["params"]
    grid, words, answers, max_words = 8, 200, 50, 20
    torch.manual_seed(0)
    frontend = CodeFrontEnd(torch.randn(p["n_embed"], p["embed_dim"]), (grid, grid), d["width"])
    model = VQAModel(frontend, words, answers, layers=d["layers"], heads=d["heads"], max_words=max_words)
    g = torch.Generator().manual_seed(0)
    b = d["batch_size"]
    batch = (torch.randint(0, p["n_embed"], (b, grid, grid), generator=g), torch.randint(0, words, (b, max_words), generator=g),
             torch.randint(1, max_words + 1, (b,), generator=g), torch.randint(0, answers, (b,), generator=g))

    def loss(m, batch):
        codes, tokens, lengths, target = batch
        return {"answer_ce": torch.nn.functional.cross_entropy(m(codes, tokens, lengths), target)}

    task = HeadTask(model, loss, lr=d["lr"], cpu_bf16=setting)
    return lambda i: task.train_step(batch, i)


def step_times(make: Callable[[dict, str], Callable[[int], None]], cfg: dict, reps: int, steps: int,
               warmup: int) -> dict:
    steppers = {s: make(cfg, s) for s in SETTINGS}
    for s in SETTINGS:
        for i in range(warmup):
            steppers[s](i)
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for _ in range(reps):  # interleaved: a burst of load from other processes hits both settings alike
        for s in SETTINGS:
            t0 = time.perf_counter()
            for i in range(steps):
                steppers[s](warmup + i)
            times[s].append((time.perf_counter() - t0) / steps)
    med = {s: statistics.median(v) for s, v in times.items()}
    return {"fp32_s_per_step": round(med["off"], 4), "bf16_s_per_step": round(med["on"], 4),
            "speedup": round(med["off"] / med["on"], 3),
            "samples_s_per_step": {"fp32": [round(t, 4) for t in times["off"]],
                                   "bf16": [round(t, 4) for t in times["on"]]}}


_CONFIG = f"from lgvq.config import load_config; load_config({str(ROOT / 'config' / 'config.yaml')!r})"
_ADAM = "import torch; torch.optim.Adam(torch.nn.Linear(2, 2).parameters())"  # every training job builds one
# What each job kind imports at run time: (before this change, after it).
JOB_IMPORTS = {
    "train_tokenizer": (["lgvq.cli", "lgvq.pipeline.tokenizer", _CONFIG, _ADAM, "torchvision.utils"],
                        ["lgvq.cli", "lgvq.pipeline.tokenizer", _CONFIG, _ADAM, "lgvq.imagegrid"]),
    "eval_reconstruction": (["lgvq.cli", "lgvq.pipeline.evaluate", _CONFIG, "lgvq.tokenizers.vqgan", "torchvision.utils"],
                            ["lgvq.cli", "lgvq.pipeline.evaluate", _CONFIG, "lgvq.tokenizers.vqgan", "lgvq.imagegrid"]),
    "stage2": (["lgvq.cli", "lgvq.pipeline.stage2", _CONFIG, _ADAM, "torchvision.utils"],
               ["lgvq.cli", "lgvq.pipeline.stage2", _CONFIG, _ADAM, "lgvq.imagegrid"]),
    "downstream_grounding": (["lgvq.cli", "lgvq.pipeline.downstream", _CONFIG, _ADAM, "torchvision.ops"],
                             ["lgvq.cli", "lgvq.pipeline.downstream", _CONFIG, _ADAM, "lgvq.downstream.grounding"]),
    # unchanged: their GPT-2 comes from transformers, WUPS from nltk's WordNet
    "downstream_vqa": (None, ["lgvq.cli", "lgvq.pipeline.downstream", _CONFIG, _ADAM, "transformers.models.gpt2",
                              "from transformers import GPT2Model", "nltk"]),
    "downstream_captioning": (None, ["lgvq.cli", "lgvq.pipeline.downstream", _CONFIG, _ADAM,
                                     "from transformers import GPT2LMHeadModel"]),
}


def _script(parts: list[str]) -> str:
    return "; ".join(p if " " in p else f"import {p}" for p in parts)


def start_up_seconds(parts: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _script(parts)], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def start_up(reps: int) -> dict:
    samples: dict[str, dict[str, list[float]]] = {k: {"before": [], "after": []} for k in JOB_IMPORTS}
    for _ in range(reps):
        for kind, (before, after) in JOB_IMPORTS.items():  # interleaved across kinds and before/after
            if before is not None:
                samples[kind]["before"].append(start_up_seconds(before))
            samples[kind]["after"].append(start_up_seconds(after))
    out = {}
    for kind, s in samples.items():
        row: dict = {"imports_after": _script(JOB_IMPORTS[kind][1]), "after_s": round(statistics.median(s["after"]), 2)}
        if s["before"]:
            row |= {"imports_before": _script(JOB_IMPORTS[kind][0]), "before_s": round(statistics.median(s["before"]), 2)}
            row["saved_s"] = round(row["before_s"] - row["after_s"], 2)
        row["samples_s"] = {k: [round(t, 2) for t in v] for k, v in s.items() if v}
        out[kind] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_speed.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (medians are reported)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    ap.add_argument("--startup-reps", type=int, default=3)
    ap.add_argument("--skip-startup", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = _default_config()
    load_before = os.getloadavg()
    steps = {name: step_times(make, cfg, a.reps, a.steps, warmup=2)
             for name, make in (("tokenizer_vqgan_default", tokenizer_step), ("stage2_codegpt", stage2_step),
                                ("head_vqa", head_step))}
    result = {
        "what": "CPU step time fp32 vs bf16 autocast (cpu_bf16 off vs on) and per-job start-up before/after "
                "dropping torchvision from the jobs; medians of interleaved repetitions",
        "machine_note": "measured on cores shared with other processes (load averages below): absolute times are "
                        "inflated and noisy, ratios from the same run are what to read",
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before]},
        "cpu": platform.processor() or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_units": cpu_has_bf16_units(),
        "auto_resolves_to": "bf16 autocast" if cpu_has_bf16_units() else "fp32",
        "threads": a.threads, "reps": a.reps, "steps_per_rep": a.steps,
        "steps": steps,
        "device": device_info(), "packages": package_versions(),
    }
    if not a.skip_startup:
        result["start_up"] = start_up(a.startup_reps)
    result["load_average_1_5_15"]["after"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_json(a.out, result)
    print(a.out)


if __name__ == "__main__":
    main()
