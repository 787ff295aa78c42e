"""The report of newstopic.study.benchmarks: the issue's targets checked against a run's figures
(PASS/MISS, never asserted) and the Markdown of docs/benchmarks.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from newstopic.resources import GOMP_SPINCOUNT


# --- the targets (issue 16, item 1) --------------------------------------------------------
@dataclass(frozen=True)
class Target:
    section: str
    name: str
    value: Callable[[dict[str, Any]], float | None]
    bound: float
    at_most: bool = False  # the value must be <= bound (else >= bound)
    unit: str = "x"

    def check(self, results: dict[str, Any]) -> dict[str, Any] | None:
        if self.section not in results:
            return None
        value = self.value(results[self.section])
        if value is None:
            return None
        ok = value <= self.bound if self.at_most else value >= self.bound
        sign = ("<" if self.unit == "s" else "≤") if self.at_most else "≥"
        return {
            "name": self.name,
            "value": round(value, 3),
            "target": f"{sign} {self.bound:g}{'×' if self.unit == 'x' else ' s'}",
            "status": "PASS" if ok else "MISS",
        }


def _ratio(a: str, b: str, key: str = "samples_per_s") -> Callable[[dict[str, Any]], float]:
    return lambda r: r[a][key] / r[b][key]


def _rss_ratio(r: dict[str, Any]) -> float | None:
    sizes = sorted(r["sizes"], key=lambda x: x["rows"])
    return sizes[-1]["process_peak_rss_mb"] / sizes[0]["process_peak_rss_mb"] if len(sizes) > 1 else None


TARGETS = (
    Target(
        "finetune",
        "fine-tuning: loop / Trainer at its best (samples/s)",
        _ratio("loop", "trainer_grouped"),
        1.5,
    ),
    Target(
        "finetune",
        "fine-tuning: loop / Trainer, static padding (samples/s)",
        _ratio("loop", "trainer_static"),
        5,
    ),
    Target("mlm", "MLM: loop / Trainer (samples/s)", _ratio("loop", "trainer"), 3),
    Target("predict", "predict: peak RSS, largest / smallest size", _rss_ratio, 1.2, at_most=True),
    Target("snakemake", "snakemake -n, whole DAG (s)", lambda r: r["full_dag"]["seconds"], 3, True, "s"),
    # A rerun of a finished run: only a true no-op (nothing left to run) measures what it names.
    Target(
        "snakemake",
        "snakemake -n, finished run (s)",
        lambda r: r["done_run"]["seconds"] if "done_run" in r and r["done_run"]["jobs"] == 0 else None,
        3,
        True,
        "s",
    ),
    # Issue 16 item 4 asks for "a fair share of the time, not a tenth": with one of the job's
    # two cores taken, a fair share is at most twice the idle step time.
    *(
        Target(
            "busy",
            f"MLM s/step, busy core / idle ({label})",
            _ratio(f"{key}_busy", key, "s_per_step"),
            2,
            True,
        )
        for key, label in (
            ("default", "libgomp default"),
            ("workflow", f"workflow: GOMP_SPINCOUNT={GOMP_SPINCOUNT}"),
        )
    ),
)


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in (target.check(results) for target in TARGETS) if t is not None]


# --- the Markdown ----------------------------------------------------------------------------
FINETUNE_ROWS = {
    "loop": "loop: length-grouped batches, dynamic padding",
    "trainer_grouped": "Trainer: group_by_length, bf16, dynamic padding",
    "trainer_static": "Trainer: every batch padded to {static_length} (run_classification.py)",
}
MLM_ROWS = {
    "loop": "loop: LM head on the masked positions only",
    "trainer": "Trainer: DataCollatorForLanguageModeling, group_by_length, bf16",
}
BUSY_SETTINGS = {
    "default": "libgomp default (threads spin ~300k iterations)",
    "workflow": f"workflow: GOMP_SPINCOUNT={GOMP_SPINCOUNT} (the Snakefile's)",
    "passive": "OMP_WAIT_POLICY=PASSIVE (threads sleep at once)",
    "spin1k": "GOMP_SPINCOUNT=1000",
    "spin10k": "GOMP_SPINCOUNT=10000",
}

NOTES = """\
## How it is measured

- Each measurement runs in a process of its own (`newstopic.study.bench_worker`), with
  `torch.set_num_threads` set to the same count, so none inherits another's kernel cache,
  allocator pool or OpenMP settings, and each peak RSS is that process's own (getrusage).
- Training speed: the time between building the batch of step `warmup` and that of step
  `warmup + steps` (the loop's `task.make_batch`, the Trainer's data collator), i.e. whole
  steps: batch, forward, backward, clipping, optimiser, scheduler, bookkeeping. The runs are
  the package's own (`newstopic.training.train`; `transformers.Trainer` set up by
  `newstopic.hf_engine.training_arguments`), with checkpoints, progress lines and evaluation
  off in both; the steps are cut to fit one epoch. samples/s = rows of those steps / their
  seconds. Positions per real token: encoder positions computed (padding included) per real
  token, the padding each engine's batching costs.
- Static padding to 128 needs 128 position embeddings; model.arch has
  {max_positions}, so that variant's encoder has a 128-row position table (the same work per
  position otherwise). (run_classification.py itself would pad to
  min(128, tokenizer.model_max_length) = {model_max_length} with this tokenizer.)
- Predict: the predict rule's function (`newstopic.predict.predict_model_dir`: stream the
  parquet, tokenise, length-sorted batches, write probabilities and the submission) with a
  random-init classifier of model.arch (speed and memory do not depend on the weights), on
  synthetic titles: real word counts of words drawn at their frequency in the real titles.
  rows/s includes loading the model.
- `snakemake -n`: wall time of the whole command (interpreter start-up included).
- Busy core: the MLM loop pinned to the job's {threads} CPUs, a `while True: pass` process
  pinned to the first of them, under three OpenMP settings (each in its own process: the
  runtime reads them when it loads). The ≤ 2× target reads issue 16 item 4's "a fair share of
  the time" for one core of two taken.
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return "" if value is None else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


def _speed_rows(section: dict[str, Any], names: dict[str, str], fill: dict[str, Any]) -> list[list[Any]]:
    base = section.get("loop", {}).get("samples_per_s")
    rows = []
    for key, label in names.items():
        if key not in section:
            continue
        r = section[key]
        versus = f"{base / r['samples_per_s']:.2f}×" if base else ""
        rows.append(
            [
                label.format(**fill),
                f"{r['samples_per_s']:,.1f}",
                f"{r['s_per_step']:.4f}",
                f"{r['median_s_per_step']:.4f}",
                f"{r['positions_per_token']:.2f}",
                f"{r['process_peak_rss_mb']:,.0f}",
                versus,
            ]
        )
    return rows


SPEED_HEADER = ["engine", "samples/s", "s/step", "median s/step", "positions per token", "peak RSS MB"]


def finetune_lines(r: dict[str, Any]) -> list[str]:
    steps = r["loop"]["steps"]
    lines = [
        "## Fine-tuning",
        "",
        f"Batch {r['batch_size']}, {steps} steps after {r['loop']['warmup_steps']} warm-up steps.",
        "",
    ]
    rows = _speed_rows(r, FINETUNE_ROWS, {"static_length": r["static_length"]})
    return lines + _table([*SPEED_HEADER, "loop is"], rows) + [""]


def mlm_lines(r: dict[str, Any]) -> list[str]:
    steps, warmup = r["loop"]["steps"], r["loop"]["warmup_steps"]
    lines = [
        "## MLM",
        "",
        f"Batch {r['batch_size']}, mask_prob {r['mask_prob']}, {steps} steps after {warmup} warm-up steps.",
        "",
    ]
    return lines + _table([*SPEED_HEADER, "loop is"], _speed_rows(r, MLM_ROWS, {})) + [""]


def predict_lines(r: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"{x['rows']:,}",
            f"{x['rows_per_s']:,.0f}",
            f"{x['seconds']:.1f}",
            f"{x['peak_rss_before_mb']:,.0f}",
            f"{x['process_peak_rss_mb']:,.0f}",
        ]
        for x in sorted(r["sizes"], key=lambda x: x["rows"])
    ]
    header = ["rows", "rows/s", "seconds", "peak RSS before predicting MB", "peak RSS MB"]
    lines = ["## Predict", "", f"batch_size {r['batch_size']}, read_batch_rows {r['read_batch_rows']}.", ""]
    return lines + _table(header, rows) + [""]


def snakemake_lines(r: dict[str, Any]) -> list[str]:
    labels = {
        "full_dag": "fresh work directory: the whole DAG to run",
        "full_dag_again": "the same, again (.snakemake/ now exists)",
        "done_run": f"finished run {r.get('done_workdir')}",
    }
    rows = [[label, r[k]["jobs"], f"{r[k]['seconds']:.2f}"] for k, label in labels.items() if k in r]
    lines = ["## snakemake -n", ""] + _table(["work directory", "jobs", "seconds"], rows) + [""]
    if "done_run" not in r:
        lines += [
            "No finished real-data run was at hand (--done-workdir), so there is no no-op rerun "
            "figure: the rows above are dry runs of the whole DAG, nothing faked complete.",
            "",
        ]
    elif r["done_run"]["jobs"]:
        lines += [f"The finished run still had {r['done_run']['jobs']} jobs to run: not a no-op.", ""]
    return lines


def busy_lines(r: dict[str, Any]) -> list[str]:
    steps = r["default"]["steps"]
    lines = [
        "## MLM and fine-tuning with a busy core",
        "",
        f"CPUs {r['cpus']}, busy loop on CPU {r['competitor_cpu']}, {steps} steps after 2 warm-up steps.",
        "",
    ]
    header = ["step", "OpenMP setting", "idle s/step", "busy core s/step", "busy / idle"]
    rows = []
    for stage, prefix in (("MLM", ""), ("fine-tuning", "finetune_")):
        for key, label in BUSY_SETTINGS.items():
            if f"{prefix}{key}" in r and f"{prefix}{key}_busy" in r:
                idle, busy = r[f"{prefix}{key}"]["s_per_step"], r[f"{prefix}{key}_busy"]["s_per_step"]
                rows.append([stage, label, f"{idle:.3f}", f"{busy:.3f}", f"{busy / idle:.2f}×"])
    return lines + _table(header, rows) + [""]


SECTION_LINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "finetune": finetune_lines,
    "mlm": mlm_lines,
    "predict": predict_lines,
    "snakemake": snakemake_lines,
    "busy": busy_lines,
}


def _load_warning(m: dict[str, Any]) -> list[str]:
    """A run on a machine busy with other work measures that work too: said at the top."""
    load = m.get("load_average_1m", 0.0)
    if load < 0.5:
        return []
    return [
        f"**The machine was not idle: 1-minute load average {load:.2f} on {m.get('usable_cores')} cores "
        "before the first measurement. Timings include other work's.**",
        "",
    ]


def target_lines(targets: list[dict[str, Any]]) -> list[str]:
    rows = [[t["name"], f"{t['value']:.2f}", t["target"], t["status"]] for t in targets]
    return ["## Targets (issue 16)", ""] + _table(["figure", "value", "target", ""], rows) + [""]


def to_markdown(report: dict[str, Any]) -> str:
    """docs/benchmarks.md from the report (benchmarks.main's JSON)."""
    m, results = report["machine"], report["results"]
    lines = ["# Benchmarks", "", "Written by:", "", "```", report["command"], "```", ""]
    seconds = report.get("section_seconds", {})
    if seconds:
        took = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
        lines += [f"On {report['machine']['date']}; wall time per section: {took}.", ""]
    if report.get("quick"):
        lines += ["**--quick: a functional check with tiny sizes; these figures mean nothing.**", ""]
    lines += _load_warning(m)
    lines += ["## Machine", ""] + _table(["", "value"], [[k, v] for k, v in m.items()]) + [""]
    lines += target_lines(report["targets"])
    for name, error in report.get("errors", {}).items():
        lines += [f"**{name} failed, no figures:** `{error}`", ""]
    for name, section_lines in SECTION_LINES.items():
        if name in results:
            lines += section_lines(results[name])
    lines.append(
        NOTES.format(
            max_positions=report["model"]["max_position_embeddings"],
            model_max_length=report["model"]["tokenizer_max_length"],
            threads=m["torch_threads"],
        )
    )
    return "\n".join(lines)


def target_summary(targets: list[dict[str, Any]]) -> str:
    """The targets as printed lines."""
    width = max((len(t["name"]) for t in targets), default=0)
    return "\n".join(
        f"  {t['name']:<{width}}  {t['value']:>9.3f}  (target {t['target']})  {t['status']}" for t in targets
    )
