"""Kill-anywhere resume check: SIGKILL a real tokenizer training at random moments, re-run the same
command until it finishes, and compare the result bit for bit with an uninterrupted run.

    python scripts/kill_anywhere.py [--kills 20] [--seed 0] [--out benchmarks/results/kill_anywhere.json]

What it does (CPU, one thread, deterministic):
1. writes a tiny config (embedded "shapes" data) into a work folder, runs `lgvq data prepare` and
   `lgvq text cache` (the real MiniLM text encoder) once;
2. runs `lgvq tokenizer train ...` (the command the DAG's `train_tokenizer` rule runs) without
   interruption: the reference. It times the start-up (until the progress bar appears) and the
   training, then moves the run folder aside;
3. draws `--kills` kill points: 20% (`--startup-share`) in the start-up (imports, data, models,
   checkpoint loading), 15% (`--final-share`, last) in the final writes after the last step
   (sample grid, model.pt, manifest), the others uniformly over the training, sorted so that
   successive kills walk from the first step to the last; runs the same command and SIGKILLs it
   at the next kill point, timed from the process start, the appearance of its progress bar,
   or the bar reaching its end (durations from the reference and the checkpoint it resumed
   from, so the machine's load does not move kills into another phase); re-runs the identical
   command after every kill until all kills have landed, then lets it finish. A kill that comes
   after the run already finished does not land: that run is compared as well, and a new round
   starts from scratch with the remaining kill points;
4. compares model.pt (every tensor), checkpoint.pt (weights, optimiser states, RNG states, data
   position, loss log) and log.csv with the reference, and writes a JSON summary (atomically) to
   `--out`: the kills that landed (the process was still running), where each landed (start-up /
   training step / after the last step), the checkpoint step each re-run resumed from, and
   `equal`. Exit status 0 when equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lgvq.io import atomic_write_json

BAR = re.compile(r"(\d+)/(\d+) \[")  # tqdm's "12/60 [" progress counter


def lgvq_command() -> list[str]:
    exe = Path(sys.executable).parent / "lgvq"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "lgvq"]


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def write_config(work: Path, args: argparse.Namespace) -> Path:
    tiny = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 8,
            "embed_dim": 8, "n_embed": 32}
    adversarial = {"disc_start": max(1, args.steps // 4), "disc_ch": 8, "disc_layers": 1}
    cfg = {
        "name": "kill-anywhere",
        "results_dir": str(work / "res"),
        "device": "cpu",
        "seeds": [0],
        "datasets": {"shapes": {"source": "shapes", "synth": {"n": args.images, "size": 16, "seed": 0},
                                "image_size": 16, "eval_images": 4}},
        "text_encoder": {"name": "minilm", "max_length": 16},
        "tokenizers": {"vqvae": {"class": "vqvae", "params": tiny},
                       "vqgan": {"class": "vqgan", "params": {**tiny, **adversarial}},
                       "cvq": {"class": "cvq", "params": {**tiny, **adversarial}}},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "lr": 0.0005, "ckpt_every": args.ckpt_every,
                  "log_every": 1},
        "data": {"loader_workers": args.loader_workers},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_checked(cmd: list[str], log: Path) -> None:
    with open(log, "ab") as fh:
        rc = subprocess.run(cmd, check=False, stdout=fh, stderr=subprocess.STDOUT, env=child_env()).returncode
    if rc != 0:
        sys.exit(f"kill_anywhere: {' '.join(cmd)} failed (exit {rc}); see {log}")


def checkpoint_step(run_dir: Path) -> int:
    """The step of the checkpoint a re-run would resume from (0: none)."""
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.is_file():
        return 0
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])


def last_bar(stderr: str) -> tuple[int, int] | None:
    found = BAR.findall(stderr)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def run_once(cmd: list[str], log: Path, kill_after: float | None, *, clock: str = "start") -> dict[str, Any]:
    """Run `cmd` (output to `log`); SIGKILL it `kill_after` seconds (None: let it finish) after
    `clock`: "start" (the process started), "bar" (its progress bar first appeared: training
    began) or "bar-end" (the bar reached its total: the last step is done, the final writes
    begin). Returns timings, whether the kill landed (the process was still running) and the
    progress-bar position at that moment."""
    t0 = time.monotonic()
    seen: dict[str, float] = {"start": 0.0}
    landed = False
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=fh, env=child_env())
        try:
            while True:
                rc = proc.poll()
                elapsed = time.monotonic() - t0
                if "bar-end" not in seen:
                    bar = last_bar(log.read_text(errors="replace"))
                    if bar is not None:
                        seen.setdefault("bar", elapsed)
                        if bar[0] >= bar[1]:
                            seen["bar-end"] = elapsed
                if rc is not None:
                    break
                if kill_after is not None and clock in seen and elapsed - seen[clock] >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    rc, landed = proc.returncode, True
                    break
                time.sleep(0.01)
        finally:
            if proc.poll() is None:  # this script was interrupted: do not leave the training behind
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    return {"rc": rc, "seconds": round(time.monotonic() - t0, 3), "landed": landed, "bar": last_bar(text),
            "bar_seconds": seen.get("bar"), "bar_end_seconds": seen.get("bar-end"), "stderr_tail": text[-400:]}


def kill_plan(rng: random.Random, kills: int, startup_share: float, final_share: float) -> list[tuple[str, float]]:
    """`kills` kill points, each (phase, u) with u uniform in [0, 1]:
    - "start-up" (round(kills x startup_share) of them, at random places in the sequence): u of
      the start-up time after the process starts (imports, data, models, checkpoint loading);
    - "training": a point u of the training (first step to last step, checkpoints and their
      sample grids included); sorted, so successive kills walk through the whole training
      instead of piling up at its end;
    - "final" (round(kills x final_share), last): u of the final writes after the last step
      (sample grid, model.pt, manifest)."""
    n_start, n_final = round(kills * startup_share), round(kills * final_share)
    n_start, n_final = min(n_start, kills), min(n_final, kills - min(n_start, kills))
    kinds = ["start-up"] * n_start + ["training"] * (kills - n_start - n_final)
    rng.shuffle(kinds)
    points = iter(sorted(rng.random() for k in kinds if k == "training"))
    plan = [(k, next(points)) if k == "training" else (k, rng.random()) for k in kinds]
    return plan + [("final", rng.random()) for _ in range(n_final)]


def compare(ref_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Bit-exact comparison of the finished run with the reference."""

    def same(a: Any, b: Any, where: str, diffs: list[str]) -> None:
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                    and a.shape == b.shape and torch.equal(a, b)):
                diffs.append(where)
        elif isinstance(a, dict) and isinstance(b, dict):
            if set(a) != set(b):
                diffs.append(f"{where} (keys)")
            for k in sorted(set(a) & set(b), key=str):
                same(a[k], b[k], f"{where}.{k}", diffs)
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                diffs.append(f"{where} (length)")
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{where}[{i}]", diffs)
        elif a != b:
            diffs.append(where)

    out: dict[str, Any] = {}
    for name in ("model.pt", "checkpoint.pt"):
        diffs: list[str] = []
        same(torch.load(ref_dir / name, map_location="cpu", weights_only=True),
             torch.load(run_dir / name, map_location="cpu", weights_only=True), name, diffs)
        # the files too, not only the tensors: nothing of the run's history (temporary names) is in them
        out[name] = {"equal": not diffs, "differences": diffs[:20],
                     "bytes_equal": (ref_dir / name).read_bytes() == (run_dir / name).read_bytes()}
    out["log.csv"] = {"equal": (ref_dir / "log.csv").read_bytes() == (run_dir / "log.csv").read_bytes()}
    n_tensors = sum(1 for sd in torch.load(ref_dir / "model.pt", weights_only=True).values()
                    if isinstance(sd, dict) for v in sd.values() if isinstance(v, torch.Tensor))
    out["model.pt"]["tensors"] = n_tensors
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs to land before letting the run finish")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--out", default=None, help="JSON summary (written atomically); also printed")
    ap.add_argument("--workdir", default=None, help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--tokenizer", default="vqgan", choices=("vqvae", "vqgan", "cvq"))
    ap.add_argument("--variant", default="lg", help="base | lg | gsa | mtp | mtp-ras | mtp-gsa")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--ckpt-every", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--images", type=int, default=60, help="embedded images (80%% train)")
    ap.add_argument("--loader-workers", type=int, default=0,
                    help="data.loader_workers: image-decoding worker processes (0 = in the training process)")
    ap.add_argument("--startup-share", type=float, default=0.2, help="share of the kills aimed at the start-up")
    ap.add_argument("--final-share", type=float, default=0.15,
                    help="share of the kills aimed at the final writes after the last step")
    args = ap.parse_args(argv)
    if args.kills < 0 or args.steps < 1 or args.ckpt_every < 1:
        ap.error("--kills must be >= 0, --steps and --ckpt-every >= 1")

    t_start = time.monotonic()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kill-anywhere-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        cfg = write_config(work, args)
        lgvq = lgvq_command()
        setup_log = work / "setup.log"
        run_checked([*lgvq, "data", "prepare", "--config", str(cfg), "--dataset", "shapes"], setup_log)
        run_checked([*lgvq, "text", "cache", "--config", str(cfg), "--dataset", "shapes",
                     "--out", str(work / "res/shapes/text/minilm.npz")], setup_log)
        cmd = [*lgvq, "tokenizer", "train", "--config", str(cfg), "--dataset", "shapes", "--tokenizer", args.tokenizer,
               "--variant", args.variant, "--seed", "0", "--threads", "1"]
        run_dir = work / "res/shapes/tokenizers" / args.tokenizer / args.variant / "seed0"
        logs = work / "logs"
        logs.mkdir(exist_ok=True)

        # 1. the uninterrupted reference
        ref = run_once(cmd, logs / "reference.log", None)
        if ref["rc"] != 0 or not (run_dir / "model.pt").is_file():
            sys.exit(f"kill_anywhere: the reference run failed (exit {ref['rc']}): {ref['stderr_tail']}")
        ref_dir = work / "reference"
        shutil.rmtree(ref_dir, ignore_errors=True)
        shutil.move(str(run_dir), ref_dir)
        if ref["bar_seconds"] is None or ref["bar_end_seconds"] is None:
            sys.exit(f"kill_anywhere: no progress bar in the reference run's output: {ref['stderr_tail']}")
        startup = ref["bar_seconds"]                                  # imports, data, models
        training = max(ref["bar_end_seconds"] - startup, 0.05)        # steps, checkpoints, their grids
        finishing = max(ref["seconds"] - ref["bar_end_seconds"], 0.05)  # sample grid, model.pt, manifest

        # 2. the same command, killed `--kills` times, then run to the end. A kill drawn after the
        # run happened to finish (the machine got faster) does not land; the finished run is
        # compared and a new round starts from scratch until `--kills` kills have landed.
        plan = kill_plan(random.Random(args.seed), args.kills, args.startup_share, args.final_share)
        attempts: list[dict[str, Any]] = []
        rounds: list[dict[str, Any]] = []
        kills_landed = 0
        while not rounds or kills_landed < args.kills:
            shutil.rmtree(run_dir, ignore_errors=True)
            first = len(attempts)
            while True:
                resume_from = checkpoint_step(run_dir)
                done = resume_from >= args.steps  # every step done: the re-run shows no progress bar
                kill = plan[kills_landed] if kills_landed < args.kills else None
                if kill is None:
                    delay, clock = None, "start"
                elif kill[0] == "start-up":
                    delay, clock = kill[1] * startup, "start"
                elif kill[0] == "training" and not done:
                    # from the resumed checkpoint to the kill point (0 when it already passed it)
                    delay, clock = max(0.0, kill[1] - resume_from / args.steps) * training, "bar"
                elif not done:
                    delay, clock = kill[1] * finishing, "bar-end"
                else:
                    delay, clock = startup + kill[1] * finishing, "start"
                r = run_once(cmd, logs / f"attempt{len(attempts):03d}.log", delay, clock=clock)
                bar = r["bar"]
                if not r["landed"]:
                    phase = "finished before the kill" if kill else "ran to the end"
                elif done:
                    phase = "re-run after the last step (start-up or final writes)"
                elif bar is None:
                    phase = "start-up (before the first step)"
                elif bar[0] >= bar[1]:
                    phase = "after the last step (sample grid / model.pt / manifest)"
                else:
                    # the bar redraws at most once a second: the step is a lower bound
                    phase = f"training (progress bar last showed step {bar[0]})"
                attempts.append({"round": len(rounds), "attempt": len(attempts), "resumed_from_step": resume_from,
                                 "kill_after_s": None if delay is None else round(delay, 3),
                                 "kill_point": None if kill is None else {"phase": kill[0], "value": round(kill[1], 4)},
                                 "kill_timed_from": None if delay is None else clock,
                                 "landed": r["landed"],
                                 "where": phase, "checkpoint_step_after": checkpoint_step(run_dir),
                                 "seconds": r["seconds"], "exit": r["rc"]})
                print(f"round {len(rounds)} attempt {len(attempts) - 1}: from step {resume_from}, "
                      f"{'killed' if r['landed'] else 'exit ' + str(r['rc'])} after {r['seconds']:.2f}s: {phase}",
                      flush=True)
                kills_landed += int(r["landed"])
                if not r["landed"]:
                    if r["rc"] != 0:
                        sys.exit(f"kill_anywhere: a re-run failed (exit {r['rc']}): {r['stderr_tail']}")
                    break
                if len(attempts) > 4 * args.kills + 20:
                    sys.exit("kill_anywhere: too many attempts")
            ours = attempts[first:]
            comparison = compare(ref_dir, run_dir)
            rounds.append({"round": len(rounds), "attempts": len(ours), "kills_landed": sum(a["landed"] for a in ours),
                           "equal": all(v["equal"] for v in comparison.values()), "comparison": comparison,
                           "stale_temporaries": sorted(f.name for f in run_dir.rglob(".*tmp-*"))})

        equal = all(r["equal"] for r in rounds)
        reruns = [a for a in attempts if a["attempt"] > 0 and attempts[a["attempt"] - 1]["round"] == a["round"]]
        summary = {
            "what": "SIGKILL a CPU tokenizer training at random moments, re-run the same command until it finishes, "
                    "compare with an uninterrupted run bit for bit",
            "command": " ".join(cmd[len(lgvq):]),
            "tokenizer": args.tokenizer, "variant": args.variant, "steps": args.steps,
            "ckpt_every": args.ckpt_every, "batch_size": args.batch_size, "images": args.images,
            "kills_requested": args.kills, "seed": args.seed,
            "kills_landed": kills_landed,
            "kills_by_phase": {
                "start-up": sum(a["landed"] and a["where"].startswith("start-up") for a in attempts),
                "training": sum(a["landed"] and a["where"].startswith("training") for a in attempts),
                "after the last step": sum(a["landed"] and a["where"].startswith(("after", "re-run after"))
                                           for a in attempts)},
            "kills_not_landed": sum(not a["landed"] and a["kill_after_s"] is not None for a in attempts),
            "resumes": len(reruns),
            "resumes_from_a_checkpoint": sum(1 for a in reruns if a["resumed_from_step"] > 0),
            "equal": equal,
            "rounds": rounds,
            "reference_seconds": {"total": ref["seconds"], "start-up": round(startup, 3),
                                  "training": round(training, 3), "final writes": round(finishing, 3)},
            "total_seconds": round(time.monotonic() - t_start, 1),
            "attempts": attempts,
            "environment": {"torch": torch.__version__, "python": platform.python_version(), "device": "cpu",
                            "threads": 1, "loader_workers": args.loader_workers, "cpu_count": os.cpu_count(),
                            "platform": platform.platform()},
        }
        if args.out:
            atomic_write_json(args.out, summary)
        print(json.dumps({k: v for k, v in summary.items() if k not in ("attempts", "rounds")}, indent=2))
        for r in rounds:
            print(f"round {r['round']}: {r['kills_landed']} kills, equal={r['equal']}, "
                  f"stale temporaries: {len(r['stale_temporaries'])}")
        return 0 if equal else 1
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
