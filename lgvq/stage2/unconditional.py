"""unconditional: codes drawn from nothing (Table 10), by CodeGPT without a prefix."""

from __future__ import annotations

from lgvq.stage2.registry import Stage2Task


class UnconditionalTask(Stage2Task):
    name = "unconditional"
    table_id = "unconditional"
