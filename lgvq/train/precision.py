"""How a model's steps execute on the device: precision, TF32, channels_last, torch.compile, cudnn.benchmark.

One definition for the tokenizer, the second stage and the understanding heads, so every stage takes
the GPU fast path the same way and every manifest records it the same way. The fast path exists
only on CUDA: a CPU run is always fp32 eager, so CPU results never depend on `fast_path`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Mapping

import torch

FP32, BF16 = "fp32", "bf16-autocast"


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
    """`fast`: bf16 autocast + TF32 + fused optimiser; true only when asked for and on CUDA."""

    fast: bool = False
    device_type: str = "cpu"
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def for_device(cls, device: torch.device | str, fast_path: bool, *, channels_last: bool = False,
                   compile: bool = False) -> "Execution":
        dev = torch.device(device)
        fast = bool(fast_path) and dev.type == "cuda"
        if fast:
            enable_tf32_and_cudnn_benchmark()
        return cls(fast, dev.type, channels_last and fast, compile)

    @classmethod
    def of_module(cls, module: torch.nn.Module, fast_path: bool, **kw: Any) -> "Execution":
        """For a model already on its device (the heads and second stage are moved by their callers)."""
        param = next(iter(module.parameters()), None)
        return cls.for_device(param.device if param is not None else "cpu", fast_path, **kw)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.fast:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Fused Adam/AdamW: one kernel for the whole update instead of a loop over parameters."""
        return {"fused": True} if self.fast else {}

    def record(self) -> dict[str, Any]:
        """What a manifest's `execution` holds."""
        return {"precision": BF16 if self.fast else FP32, **backend_flags(),
                "channels_last": self.channels_last, "compile": self.compile, "device": self.device_type}


FP32_EAGER = {"precision": FP32, "tf32": False, "channels_last": False, "compile": False, "cudnn_benchmark": False}


def execution_note(execution: Mapping[str, Any] | None) -> str | None:
    """A table note's words for a run that did not execute as fp32 eager; None when it did (or is unknown)."""
    if not execution:
        return None
    words = {"precision": "bf16 autocast", "tf32": "TF32", "channels_last": "channels_last",
             "compile": "torch.compile", "cudnn_benchmark": "cudnn.benchmark"}
    differ = [words[k] for k, plain in FP32_EAGER.items() if k in execution and execution[k] != plain]
    return ", ".join(differ) or None
