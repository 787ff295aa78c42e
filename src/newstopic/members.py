"""Ensemble members by name (config `ensemble.members`, `cv.seeds`, `ensemble.encoders`).

A member is one of:

- `finetune`, `retrain`: a training stage's K fold models at the stage's own seed;
- `baseline`: the TF-IDF baseline refit on the folds;
- an extra encoder named in `ensemble.encoders` (e.g. `roberta`): its own tokenizer (from its
  `name_or_path`), optionally its own MLM, and its own finetune fold jobs;
- any of the trained ones at an extra training seed of `cv.seeds`: `finetune@seed7`,
  `retrain@seed7`, `roberta@seed7`. The seed changes the training seed only (initialisation,
  batch order, dropout, input noise), never the folds or the valid split (both from `seed`).

Each trained member has its own folder under results/ (`Member.directory`); the workflow's
rules (workflow/rules/members.smk) train it and fold_average makes it one member.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newstopic.errors import ConfigError

STAGES = ("finetune", "retrain")
BASELINE = "baseline"
_NAME = re.compile(r"^(?P<base>[a-z][a-z0-9_]*)(?:@seed(?P<seed>\d+))?$")


@dataclass(frozen=True)
class Member:
    """One configured member: `base` is a stage, the baseline or an encoder's name; `seed` an
    extra training seed (None: the stage's own seed)."""

    name: str
    base: str
    seed: int | None = None

    @property
    def encoder(self) -> str | None:
        """The extra encoder's name (ensemble.encoders), None for the config's own model."""
        return None if self.base in (*STAGES, BASELINE) else self.base

    @property
    def stage(self) -> str:
        """The training stage: an extra encoder is fine-tuned (not retrained on pseudo-labels)."""
        return "finetune" if self.encoder else self.base

    def directory(self, round_: int | None = None) -> str:
        """Its folder under results/ (fold jobs in fold<k>/ below it); `round_` for retrain
        with pseudo_label.rounds >= 2."""
        if self.encoder:
            base = f"encoders/{self.encoder}/finetune"
        elif self.base == "retrain" and round_ is not None:
            base = f"round{round_}/retrain"
        else:
            base = self.base
        return base if self.seed is None else f"{base}/seed{self.seed}"

    def label(self, encoders: Mapping[str, Any]) -> str:
        """What the ensemble's report calls it: the name and, in words, what it is."""
        if self.base == BASELINE:
            return "baseline (TF-IDF + LinearSVC, refit on the folds)"
        what = (
            f"{self.encoder}: {encoders[self.encoder]['name_or_path']} fine-tuned"
            if self.encoder
            else f"{self.base} (this config's encoder)"
        )
        seed = "its own seed" if self.seed is None else f"training seed {self.seed}"
        return f"{what}, {seed}"


def parse_member(name: str, encoders: Mapping[str, Any], seeds: list[int]) -> Member:
    """The member `name` (from ensemble.members), or a one-line ConfigError naming the key."""
    match = _NAME.match(name)
    known = [*STAGES, BASELINE, *encoders]
    if not match or match["base"] not in known:
        raise ConfigError(
            f"key 'ensemble.members': {name!r} is not a member; members are {', '.join(known)}, "
            "and the trained ones at an extra seed of cv.seeds, e.g. finetune@seed7"
        )
    seed = None if match["seed"] is None else int(match["seed"])
    if seed is not None and match["base"] == BASELINE:
        raise ConfigError(f"key 'ensemble.members': {name!r}: the baseline has no training seed")
    if seed is not None and seed not in seeds:
        raise ConfigError(f"key 'ensemble.members': {name!r}: seed {seed} is not in cv.seeds {list(seeds)}")
    return Member(name, match["base"], seed)


def configured_members(config: Mapping[str, Any]) -> list[Member]:
    """ensemble.members parsed, in their order."""
    encoders, seeds = config["ensemble"]["encoders"], config["cv"]["seeds"]
    return [parse_member(name, encoders, seeds) for name in config["ensemble"]["members"]]


def own_seeds(config: Mapping[str, Any]) -> dict[str, int]:
    """Each training stage's own seed (its section's seed, else the top-level one)."""
    return {s: config["seed"] if config[s]["seed"] is None else config[s]["seed"] for s in STAGES}


def check_members(config: Mapping[str, Any]) -> None:
    """Extra seeds that are no stage's own, and encoders with a name and a source (start-up
    check)."""
    seeds = config["cv"]["seeds"]
    for stage, seed in own_seeds(config).items():
        if seed in seeds:
            raise ConfigError(f"key 'cv.seeds': {seed} is {stage}'s own seed already; list only extra seeds")
    for name, encoder in config["ensemble"]["encoders"].items():
        if name in (*STAGES, BASELINE):
            raise ConfigError(f"key 'ensemble.encoders.{name}': {name!r} is a member's name already")
        if not encoder["name_or_path"]:
            raise ConfigError(
                f"key 'ensemble.encoders.{name}.name_or_path' is required: the hub id or local "
                "directory of the member's pretrained encoder"
            )
    configured_members(config)  # each name parsed: one line for the first bad one
