"""How many lines a newcomer reads to follow the finetune stage from the Snakefile to the loop.

Counts the lines (blank ones included) of what that path goes through, at a git revision:
the Snakefile, the finetune rule, the common.smk helpers it calls, its script, and the
package's functions and classes on the way down to the training loop (not the modules
around them). Also: the largest function complexity (ruff C901) and the most parameters of
a public function in the package.

    python .ci/reading_path.py [REV ...]     (default: HEAD)
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SMK_HELPERS = [
    "scratch",
    "resources_of",
    "runtime_params",
    "training_settings",
    "encoder_input",
    "encoder_param",
]
# Before the stage runner (commit b6958e0) and after it: file -> names on the path.
PATHS = {
    "before": {
        "scripts/finetune.py": None,
        "src/newstopic/finetune.py": ["read_labeled", "initial_classifier", "finetune"],
        "src/newstopic/training.py": [
            "StopRequest",
            "LoopSettings",
            "resolve_device",
            "autocast",
            "param_groups",
            "_WithLoss",
            "train",
        ],
    },
    "after": {
        "scripts/train.py": None,
        "src/newstopic/stages.py": ["StageFiles", "stage_seed", "run_stage", "run_training_rule"],
        "src/newstopic/finetune.py": [
            "ClassifierTask",
            "initial_classifier",
            "classifier_task",
            "classifier_loss",
        ],
        "src/newstopic/formats.py": ["read_labeled"],
        "src/newstopic/device.py": ["resolve_device", "autocast", "describe"],
        "src/newstopic/training.py": [
            "Task",
            "LoopSettings",
            "StopRequest",
            "Progress",
            "param_groups",
            "_WithLoss",
            "train",
            "resume_or_start",
            "forward_backward",
            "end_of_epoch",
        ],
    },
}


def show(rev: str, path: str) -> str | None:
    out = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def python_lines(text: str, names: list[str] | None) -> int:
    if names is None:
        return len(text.splitlines())
    spans = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in names:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans[node.name] = node.end_lineno - first + 1
    missing = set(names) - set(spans)
    if missing:
        raise SystemExit(f"not found: {sorted(missing)}")
    return sum(spans.values())


def smk_block(text: str, header: str) -> int:
    """Lines of the top-level block starting with `header` (a def or a rule)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        return 0
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
        end += 1
    while not lines[end - 1].strip():
        end -= 1
    return end - start


def reading_path(rev: str) -> dict[str, int]:
    which = "after" if show(rev, "src/newstopic/stages.py") else "before"
    counts = {"Snakefile": len(show(rev, "Snakefile").splitlines())}
    common = show(rev, "workflow/rules/common.smk")
    counts["common.smk helpers"] = sum(smk_block(common, f"def {name}(") for name in SMK_HELPERS)
    counts["rule finetune"] = smk_block(show(rev, "workflow/rules/train.smk"), "rule finetune:")
    for path, names in PATHS[which].items():
        counts[path] = python_lines(show(rev, path), names)
    return counts


def code_shape(rev: str) -> tuple[str, str]:
    """The most complex function and the public function with the most parameters."""
    tree = subprocess.run(["git", "archive", rev, "src"], capture_output=True, check=True).stdout
    tmp = subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["tar", "-x", "-C", tmp], input=tree, check=True)
    rules = ["--select", "C901,PLR0913", "--config", "lint.mccabe.max-complexity=0"]
    rules += ["--config", "lint.pylint.max-args=0", "--output-format", "concise", "--no-cache", "-q"]
    out = subprocess.run(["ruff", "check", f"{tmp}/src", *rules], capture_output=True, text=True).stdout
    complexity = [(int(n), name) for name, n in re.findall(r"`(\w+)` is too complex \((\d+) > 0\)", out)]
    args = []
    for line in out.splitlines():
        m = re.search(
            r"^(.*?):(\d+):\d+: PLR0913 Too many arguments in function definition \((\d+) > 0\)", line
        )
        if m:
            source = Path(m[1]).read_text().splitlines()[int(m[2]) - 1]
            name = re.search(r"def (\w+)", source)
            if name and not name[1].startswith("_"):
                args.append((int(m[3]), name[1]))
    subprocess.run(["rm", "-rf", tmp], check=True)
    top_c, top_a = max(complexity), max(args)
    return f"{top_c[1]} ({top_c[0]})", f"{top_a[1]} ({top_a[0]})"


for rev in sys.argv[1:] or ["HEAD"]:
    counts = reading_path(rev)
    complexity, params = code_shape(rev)
    print(f"{rev}: {sum(counts.values())} lines on the finetune reading path")
    for name, n in counts.items():
        print(f"  {n:4d}  {name}")
    print(f"  most complex function: {complexity}; most parameters of a public function: {params}")
