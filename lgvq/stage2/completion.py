"""completion: the bottom half of a test image's code grid drawn given its top half (Table 7)."""

from __future__ import annotations

from typing import Any

from lgvq.stage2.registry import Stage2Task


class CompletionTask(Stage2Task):
    """CodeGPT without a prefix; sampling starts from the real codes of the top half, which the
    sample keeps bit-exact (the pipeline checks it)."""

    name = "completion"
    table_id = "completion"

    def given(self, real: Any) -> Any:
        return real[:, : real.shape[1] // 2].flatten(1)
