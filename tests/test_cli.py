"""The CLI: Ctrl-C and signals reach the user as one line and an exit status, never as a traceback;
every DAG rule calls a declared pipeline verb."""

from __future__ import annotations

import signal
from pathlib import Path

import lgvq.cli as cli


def test_ctrl_c_outside_training_is_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_doctor", interrupted)
    assert cli.main(["doctor"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "lgvq: interrupted (SIGINT); no partial output was kept, run the same command again"


def test_training_stopped_by_a_signal_exits_with_128_plus_its_number(monkeypatch, capsys):
    from lgvq.train.loop import TrainingInterrupted

    def stopped(args):
        raise TrainingInterrupted(signal.SIGTERM, 17, Path("/r/checkpoint.pt"))

    monkeypatch.setattr(cli, "_doctor", stopped)
    assert cli.main(["doctor"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == ("lgvq: interrupted by SIGTERM at step 17: checkpoint /r/checkpoint.pt "
                                               "saved; run the same command again to continue")


def test_every_rules_command_is_a_declared_pipeline_verb():
    """Each DAG job kind is one row of cli.PIPELINE_VERBS (tables and report have their own flags)."""
    import re

    root = Path(__file__).resolve().parent.parent
    used = set()
    for smk in (root / "workflow" / "rules").glob("*.smk"):
        used |= set(re.findall(r'\{(?:LGVQ|GPU_LGVQ|TRAIN_LAUNCH|launcher\([^)]*\))\} ([a-z0-9]+) ([a-z0-9-]+)', smk.read_text()))
    declared = {(v.group, v.verb) for v in cli.PIPELINE_VERBS}
    assert len(used) >= 12 and used - declared == {("tables", "build"), ("report", "--config")}, used - declared
    assert declared <= used  # and no declared verb is left without a rule


def test_every_command_is_declared_in_one_of_the_two_verb_tables():
    """`lgvq <group> <verb>` exists exactly for the PIPELINE_VERBS and TOOL_VERBS rows (plus `metrics fid`, added by
    lgvq.metrics.cli), and each tool verb's handler is a function of the module."""
    import argparse

    parser = cli.build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = set()
    for group, p in top.choices.items():
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        commands |= {(group, verb) for verb in subs[0].choices} if subs else {(group, "")}
    declared = {(v.group, v.verb) for v in (*cli.PIPELINE_VERBS, *cli.TOOL_VERBS)} | {("metrics", "fid")}
    assert commands == declared
    assert {g for g, _ in commands} == {g for g, _ in cli.GROUPS}
    assert all(callable(getattr(cli, v.handler)) for v in cli.TOOL_VERBS)
