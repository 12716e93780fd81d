"""The job launcher of the GPU rules: give the job its own GPUs, then become the job's command.

    python -m lgvq.pipeline.launch --gpus N -- lgvq tokenizer train ...
    python -m lgvq.pipeline.launch --gpus N -- torchrun --standalone --nproc_per_node N -m lgvq.cli ...

Snakemake's `--resources gpu=K` only counts: K jobs asking for one GPU each may run at once, but
every one of them would see all K devices and use cuda:0. The launcher picks N of the devices this
process may see (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`) that no other job holds, holding one
lock file per device (`flock`, released by the kernel when the job exits, however it exits), and
sets CUDA_VISIBLE_DEVICES to them. Under SLURM the allocation already has exactly the job's GPUs;
the locks are then per SLURM job, so they never collide with another job's renumbered devices.
When all devices are held, it waits for one to be released (a run without `--resources gpu=K`
over-subscribes; it queues instead of sharing a device).

The command is exec'd (not a child): signals (SIGTERM/SIGUSR1 before a time limit) reach it directly
and its exit status is the job's. With no GPU on the machine it only execs; `--gpus 0` hides the GPUs.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAIT_SECONDS = 2.0


def visible_devices(env: dict[str, str] | None = None) -> list[str]:
    """The device names this process may use: CUDA_VISIBLE_DEVICES' entries, else nvidia-smi's GPUs."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def lock_dir(env: dict[str, str] | None = None) -> Path:
    """Where the device locks live: one namespace per machine, or per SLURM job inside one."""
    env = os.environ if env is None else env
    if env.get("LGVQ_GPU_LOCK_DIR"):
        return Path(env["LGVQ_GPU_LOCK_DIR"])
    scope = f"slurm-{env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else "local"
    return Path(tempfile.gettempdir()) / f"lgvq-gpu-slots-{os.getuid()}-{scope}"


def try_acquire(devices: list[str], n: int, where: Path) -> tuple[list[str], list[int]] | None:
    """Lock `n` free devices of `devices` (in order): (their names, the open lock fds), or None and
    nothing held when fewer than `n` are free."""
    where.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    fds: list[int] = []
    for dev in devices:
        fd = os.open(where / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', dev)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        names.append(dev)
        fds.append(fd)
        if len(names) == n:
            return names, fds
    for fd in fds:
        os.close(fd)
    return None


def acquire(devices: list[str], n: int, where: Path, *, wait: float = WAIT_SECONDS,
            timeout: float | None = None) -> tuple[list[str], list[int]]:
    """`try_acquire` until it succeeds (or `timeout` seconds pass: TimeoutError)."""
    if n > len(devices):
        seen = ",".join(devices) or "none"
        raise ValueError(f"the job asks for {n} GPUs, this machine lets it see {len(devices)} ({seen})")
    start, said = time.monotonic(), False
    while True:
        got = try_acquire(devices, n, where)
        if got is not None:
            return got
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no {n} free GPUs of {','.join(devices)} within {timeout:.0f} s (locks in {where})")
        if not said:
            print(f"lgvq: all GPUs are held by other jobs; waiting for {n} of {','.join(devices)} "
                  "(run Snakemake with --resources gpu=<number of GPUs> to queue jobs there)",
                  file=sys.stderr, flush=True)
            said = True
        time.sleep(wait)


def prepare(gpus: int, env: dict[str, str]) -> tuple[dict[str, str], list[int]]:
    """The environment the job runs with (its CUDA_VISIBLE_DEVICES) and the lock fds it must keep."""
    env = dict(env)
    devices = visible_devices(env)
    if gpus == 0:
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env, []
    if not devices:
        return env, []  # a CPU machine: the job runs on the CPU (device: auto)
    names, fds = acquire(devices, gpus, lock_dir(env))
    env["CUDA_VISIBLE_DEVICES"] = ",".join(names)
    return env, fds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lgvq.pipeline.launch", description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, required=True, help="GPUs of this job (the rule's `gpu` resource)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command after --")
    if args.gpus < 0:
        p.error("--gpus must be 0 or more")
    try:
        env, fds = prepare(args.gpus, dict(os.environ))
    except ValueError as e:
        print(f"lgvq: error: {e}", file=sys.stderr)
        return 2
    for fd in fds:
        os.set_inheritable(fd, True)  # the locks live as long as the job (and torchrun's ranks)
    try:
        os.execvpe(cmd[0], cmd, env)
    except OSError as e:
        print(f"lgvq: error: cannot run {cmd[0]}: {e}", file=sys.stderr)
        return 127
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
