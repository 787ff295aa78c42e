"""Real Snakemake runs for the study tools: the command line, built in one place, and what a
finished run left behind (metrics, wall time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from newstopic.config import deep_merge, validate_config


@dataclass
class Runner:
    """The workflow (`repo`), the config files every run starts from, and the cores to use."""

    repo: Path
    config_files: list[Path]
    cores: int = 2

    def command(
        self,
        workdir: Path,
        extra_configs: Sequence[Path] = (),
        targets: Sequence[str] = (),
        allowed_rules: Sequence[str] = (),
    ) -> list[str]:
        """`snakemake` on this repository's Snakefile, writing into `workdir`."""
        cmd = [sys.executable, "-m", "snakemake", "-s", str(self.repo / "Snakefile"), "-d", str(workdir)]
        cmd += ["--cores", str(self.cores), "--configfile", *map(str, [*self.config_files, *extra_configs])]
        if allowed_rules:
            cmd += ["--allowed-rules", *allowed_rules]
        if targets:
            cmd += ["--", *targets]
        return cmd

    def run(
        self,
        workdir: Path,
        overlay: dict[str, Any],
        targets: Sequence[str] = (),
        allowed_rules: Sequence[str] = (),
    ) -> float | None:
        """One real run in `workdir` with `overlay` (written to workdir/overlay.yaml) over the
        config files and the data paths made absolute. Returns its elapsed seconds, from its
        Snakemake log; None when it had nothing to do."""
        workdir.mkdir(parents=True, exist_ok=True)
        overlay_file = workdir / "overlay.yaml"
        overlay_file.write_text(yaml.safe_dump(overlay, allow_unicode=True))
        before = set(run_logs(workdir))
        subprocess.run(self.command(workdir, [overlay_file], targets, allowed_rules), check=True)
        seconds = [elapsed_s(log) for log in sorted(set(run_logs(workdir)) - before)]
        return next((s for s in reversed(seconds) if s is not None), None)

    def data_overlay(self, relative_to: Path | None = None) -> dict[str, Any]:
        """data.* of the config files as absolute paths (the runs use other work dirs), or
        relative to `relative_to`: as a run started by hand in that work directory records them,
        so that Snakemake sees the same inputs and reruns nothing."""
        data: dict[str, str] = {}
        for f in self.config_files:
            data.update((yaml.safe_load(f.read_text()) or {}).get("data", {}))
        paths = {k: (self.repo / v).resolve() for k, v in data.items()}
        if relative_to is None:
            return {"data": {k: str(p) for k, p in paths.items()}}
        return {"data": {k: os.path.relpath(p, relative_to) for k, p in paths.items()}}


def reproducing_args(given: Sequence[str]) -> list[str]:
    """A study's arguments that reproduce its runs (not merely its report): without
    --report-only, and without --note and its paragraph."""
    shown: list[str] = []
    skip = False
    for a in given:
        if not skip and a != "--report-only" and a != "--note" and not a.startswith("--note="):
            shown.append(a)
        skip = a == "--note"
    return shown


def merged_config(config_files: Sequence[Path]) -> dict[str, Any]:
    """The config files merged in order (as `snakemake --configfile A B`), validated, defaults in."""
    raw: dict[str, Any] = {}
    for f in config_files:
        raw = deep_merge(raw, yaml.safe_load(f.read_text()) or {})
    return validate_config(raw, source=" + ".join(f.name for f in config_files))


def training_seed(config: dict[str, Any]) -> int:
    """The seed a validated config's own finetune trains under (finetune.seed, else `seed`)."""
    return config["finetune"]["seed"] if config["finetune"]["seed"] is not None else config["seed"]


def accuracy(run: Path, stage: str) -> float:
    """Valid accuracy of `stage` in a finished run directory."""
    return json.loads((run / "results" / stage / "metrics.json").read_text())["valid_accuracy"]


def elapsed_s(log: Path) -> float | None:
    """A Snakemake log's "Elapsed time" in seconds; None for a run with nothing to do."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("Elapsed time:"):
            h, m, sec = line.split(":", 1)[1].strip().split(":")
            return round(int(h) * 3600 + int(m) * 60 + float(sec), 1)
    return None


def run_logs(workdir: Path) -> list[Path]:
    """The Snakemake logs of `workdir`, oldest first."""
    return sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))


def last_run_wall_s(workdir: Path) -> float:
    """Wall time of the latest Snakemake run in `workdir`, from the "Elapsed time" line of its log."""
    for log in reversed(run_logs(workdir)):  # a run with nothing to do has none: the one before
        if (seconds := elapsed_s(log)) is not None:
            return seconds
    raise RuntimeError(f"{workdir}: no finished Snakemake run (no 'Elapsed time' in .snakemake/log)")


def same_files(a: Path, b: Path) -> bool:
    """Whether two directories hold the same files (names, sizes and mtimes: copies by copytree)."""

    def listing(root: Path) -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")
            if p.is_file()
        }

    return listing(a) == listing(b)
