"""How steps execute (lgvq.train.precision) and how every manifest records it."""

from __future__ import annotations

import json

import pytest
import torch

from lgvq.manifest import RunRecord
from lgvq.train.precision import BF16, FP32, Execution, execution_note


def test_the_fast_path_is_never_taken_on_the_cpu():
    ex = Execution.for_device("cpu", fast_path=True, channels_last=True)
    assert not ex.fast and not ex.channels_last and ex.optimizer_kwargs() == {}
    assert ex.record()["precision"] == FP32 and ex.record()["device"] == "cpu"
    with ex.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_table_note_names_only_what_differs_from_fp32_eager():
    plain = {"precision": FP32, "tf32": False, "channels_last": False, "compile": False, "cudnn_benchmark": False}
    assert execution_note(plain) is None and execution_note(None) is None
    assert execution_note({**plain, "compile": True}) == "torch.compile"
    fast = {**plain, "precision": BF16, "tf32": True, "channels_last": True, "cudnn_benchmark": True}
    assert execution_note(fast) == "bf16 autocast, TF32, channels_last, cudnn.benchmark"


def test_every_manifest_records_how_the_job_executed(tmp_path):
    m = json.loads(RunRecord("eval/x", {"a": 1}).write(tmp_path / "a").read_text())
    assert m["execution"]["precision"] == FP32 and m["execution"]["compile"] is False
    assert {"tf32", "channels_last", "cudnn_benchmark"} <= set(m["execution"])
    given = {**Execution.for_device("cpu", True, compile=True).record(), "fast_path": True}
    m = json.loads(RunRecord("tokenizer/train", {"a": 1}, execution=given).write(tmp_path / "b").read_text())
    assert m["execution"]["compile"] is True and m["execution"]["fast_path"] is True
    m = json.loads(RunRecord("stage2/x", {"a": 1}).write(tmp_path / "c", execution={"precision": BF16}).read_text())
    assert m["execution"]["precision"] == BF16 and "tf32" in m["execution"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast path exists only on CUDA")
def test_on_cuda_a_head_trains_under_bf16_autocast_with_tf32_and_fused_adamw():
    from lgvq.downstream.task import HeadTask

    model = torch.nn.Linear(8, 4).cuda()
    seen = []
    task = HeadTask(model, lambda m, b: seen.append(m(b).dtype) or {"mse": m(b).float().pow(2).mean()}, lr=1e-3,
                    fast_path=True)
    task.train_step(torch.randn(3, 8, device="cuda"), 0)
    assert seen == [torch.bfloat16] and task.opt.defaults["fused"] and model.weight.dtype == torch.float32
    assert task.execution.record()["precision"] == BF16 and torch.backends.cuda.matmul.allow_tf32
