"""Every `snakemake` command written in the README, the docs, the Snakefile's header and the
profiles' comments runs as written (as a dry run, from a checkout's root), and `make table`
follows the config's results_dir."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SOURCES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")), "Snakefile",
           *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "profiles").glob("*/config.yaml")), "config/paper.yaml"]


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for each snakemake command in backticks, a code block or a `#   ` comment line."""
    found = []
    for name in SOURCES:
        for line in (ROOT / name).read_text().splitlines():
            spans = re.findall(r"`(snakemake [^`]*)`", line)
            bare = re.match(r"^\s*#?\s*(snakemake [^`]*?)(?:\s{2,}.*)?$", line)  # code block / comment line
            if bare and not spans:
                spans = [bare.group(1)]
            found += [(name, cmd.strip()) for cmd in spans if "<" not in cmd]  # <placeholders> are not commands
    return found


COMMANDS = documented_commands()


def test_the_commands_users_copy_are_found():
    cmds = {c for _, c in COMMANDS}
    assert {"snakemake --cores all results/tables", "snakemake --cores all results/tables/ablation.md",
            "snakemake -n --configfile config/paper.yaml"} <= cmds, cmds


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A checkout's root without its results: the files a command reads, linked."""
    view = tmp_path_factory.mktemp("checkout")
    for name in ("Snakefile", "workflow", "config", "profiles"):
        (view / name).symlink_to(ROOT / name)
    return view


@pytest.mark.parametrize("source,cmd", COMMANDS, ids=[f"{s}:{c}" for s, c in COMMANDS])
def test_documented_command_runs_as_written(checkout, source, cmd):
    argv = shlex.split(cmd)
    if "-n" not in argv and "--dry-run" not in argv:
        argv.append("-n")  # after everything: a flag, so it cannot be taken for a --configfile value
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{source}: `{cmd}` failed:\n{(out.stdout + out.stderr)[-3000:]}"
    assert "Job stats" in out.stdout + out.stderr or "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.parametrize("config,results", [("config/config.yaml", "results"), ("config/smoke.yaml", "results/smoke")])
def test_make_table_follows_the_configs_results_dir(config, results):
    out = subprocess.run(["make", "-n", "table", "T=ablation", f"CONFIG={config}"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stderr
    assert f"snakemake {results}/tables/ablation.md --cores all --configfile {config}" in out.stdout
