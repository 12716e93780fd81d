"""How a model's steps execute on the device: precision, TF32, channels_last, torch.compile, cudnn.benchmark.

One definition for the tokenizer, the second stage and the understanding heads, so every stage takes
the GPU fast path the same way and every manifest records it the same way. The fast path exists
only on CUDA: CPU results never depend on `fast_path`.

On the CPU a step is fp32 eager unless the stage's `cpu_bf16` switch says otherwise: `on` runs it
under CPU bf16 autocast (matmuls and convolutions in bf16, parameters, gradients, losses and
code assignment in fp32); `auto` does so only on a CPU with bf16 matrix units (AMX-BF16 or
AVX512-BF16, `cpu_has_bf16_units`), where bf16 is faster than fp32 (benchmarks/bench_cpu_speed.py
records the measured ratio); elsewhere bf16 is emulated and slower, so `auto` stays fp32.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

FP32, BF16, BF16_CPU = "fp32", "bf16-autocast", "bf16-autocast (cpu)"
CPU_BF16_CHOICES = ("auto", "on", "off")
# /proc/cpuinfo flag of x86 bf16 matrix units: Intel AMX (Sapphire Rapids and later), on which oneDNN runs
# CPU-autocast matmuls and convolutions as tile operations. AVX512-BF16 alone (dot-product instructions:
# Cooper Lake, AMD Zen 4+) does not count: measured on such a CPU, bf16 autocast made the default profile's
# tokenizer step 0.65-0.77x and its stage-2 step 0.2-0.33x as fast as fp32 (benchmarks/README.md, CPU speed).
BF16_UNIT_FLAGS = ("amx_bf16",)


def cpuinfo_has_bf16_units(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a bf16 matrix unit among its `flags`."""
    flags = {w for line in cpuinfo.splitlines() if line.startswith("flags") for w in line.split(":", 1)[-1].split()}
    return any(f in flags for f in BF16_UNIT_FLAGS)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16_units() -> bool:
    """Whether this CPU has bf16 matrix units (AMX tiles). torch's own probe (cpuinfo, any OS) when this torch
    has it, else the flags of /proc/cpuinfo (Linux); False when neither can tell."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if callable(probe):
        return bool(probe())
    try:
        return cpuinfo_has_bf16_units(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def cpu_bf16_enabled(setting: str) -> bool:
    """The rule for a stage's `cpu_bf16` switch: on, off, or auto = on exactly when the CPU has bf16 units."""
    if setting not in CPU_BF16_CHOICES:
        raise ValueError(f"cpu_bf16: {setting!r} is not one of {', '.join(CPU_BF16_CHOICES)}")
    return setting == "on" or (setting == "auto" and cpu_has_bf16_units())


def enable_tf32_and_cudnn_benchmark() -> None:
    """Process-wide switches of the fast path: TF32 tensor cores for fp32 matmuls and convolutions
    (what autocast leaves in fp32), and cuDNN's autotuner (every stage trains at fixed shapes)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def backend_flags() -> dict[str, bool]:
    """The process-wide flags as they stand now (a manifest records what actually ran)."""
    cuda = torch.cuda.is_available()
    return {"tf32": bool(cuda and torch.backends.cuda.matmul.allow_tf32),
            "cudnn_benchmark": bool(cuda and torch.backends.cudnn.benchmark)}


@dataclass(frozen=True)
class Execution:
    """`fast`: bf16 autocast + TF32 + fused optimiser; true only when asked for and on CUDA.
    `cpu_bf16`: bf16 autocast on the CPU (the `cpu_bf16` switch, resolved by `cpu_bf16_enabled`)."""

    fast: bool = False
    device_type: str = "cpu"
    channels_last: bool = False
    compile: bool = False
    cpu_bf16: bool = False

    @classmethod
    def for_device(cls, device: torch.device | str, fast_path: bool, *, channels_last: bool = False,
                   compile: bool = False, cpu_bf16: str = "off") -> "Execution":
        dev = torch.device(device)
        fast = bool(fast_path) and dev.type == "cuda"
        if fast:
            enable_tf32_and_cudnn_benchmark()
        return cls(fast, dev.type, channels_last and fast, compile, dev.type == "cpu" and cpu_bf16_enabled(cpu_bf16))

    @classmethod
    def of_module(cls, module: torch.nn.Module, fast_path: bool, **kw: Any) -> "Execution":
        """For a model already on its device (the heads and second stage are moved by their callers)."""
        param = next(iter(module.parameters()), None)
        return cls.for_device(param.device if param is not None else "cpu", fast_path, **kw)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The step's forward pass and losses run inside this. Code assignment turns it off again
        (lgvq.tokenizers.quantizers.full_precision), on either device."""
        if self.fast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Fused Adam/AdamW: one kernel for the whole update instead of a loop over parameters."""
        return {"fused": True} if self.fast else {}

    def record(self) -> dict[str, Any]:
        """What a manifest's `execution` holds."""
        precision = BF16 if self.fast else BF16_CPU if self.cpu_bf16 else FP32
        return {"precision": precision, **backend_flags(),
                "channels_last": self.channels_last, "compile": self.compile, "device": self.device_type,
                # what `cpu_bf16: auto` decided from (None off the CPU)
                "cpu_bf16_units": cpu_has_bf16_units() if self.device_type == "cpu" else None}


FP32_EAGER = {"precision": FP32, "tf32": False, "channels_last": False, "compile": False, "cudnn_benchmark": False}


def execution_note(execution: Mapping[str, Any] | None) -> str | None:
    """A table note's words for a run that did not execute as fp32 eager; None when it did (or is unknown)."""
    if not execution:
        return None
    words = {"precision": "bf16 autocast (CPU)" if execution.get("precision") == BF16_CPU else "bf16 autocast",
             "tf32": "TF32", "channels_last": "channels_last",
             "compile": "torch.compile", "cudnn_benchmark": "cudnn.benchmark"}
    differ = [words[k] for k, plain in FP32_EAGER.items() if k in execution and execution[k] != plain]
    return ", ".join(differ) or None
