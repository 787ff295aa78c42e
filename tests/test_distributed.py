"""Training on several processes: a rule given `processes: 2` runs under torchrun with
DistributedDataParallel (gloo on CPU) and learns what one process learns with the same
global batch; a stop signal checkpoints every rank at the same step and the rerun resumes.

Comparability: dropout is off (model.dropout and model.arch.dropout 0), so each step is a
deterministic function of the weights and the global batch; batches depend on (seed, epoch)
and MLM masks on (seed, step) only. What remains is float summation order (each rank sums
its rows, then gradients are averaged): measured differences ~1e-6, asserted below 1e-4.
The runs compared start from the same split and tokenizer (copied), so that they differ in
training alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake, snakemake_env
from safetensors.torch import load_file

from newstopic.config import validate_config
from newstopic.distributed import torchrun_command
from newstopic.errors import ConfigError
from newstopic.resources import job_resources

TARGET = "results/finetune/metrics.json"
BASE = {
    "model": {"dropout": 0.0, "arch": {"dropout": 0.0}},
    "mlm": {"epochs": 1},
    "finetune": {"epochs": 1},
    "runtime": {"threads": 1, "log_every": 5},
}
TWO = {**BASE, "resources": {"mlm_pretrain": {"processes": 2}, "finetune": {"processes": 2}}}
WEIGHT_TOL = 1e-4
LOSS_RTOL = 1e-5


def _weights(wf: Path, stage: str) -> dict:
    return load_file(wf / "results" / stage / "model" / "model.safetensors")


def _metrics(wf: Path, stage: str) -> dict:
    return json.loads((wf / "results" / stage / "metrics.json").read_text())


def _assert_same_training(a: Path, b: Path) -> None:
    for stage in ("mlm", "finetune"):
        wa, wb = _weights(a, stage), _weights(b, stage)
        assert wa.keys() == wb.keys()
        worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
        print(f"{stage}: largest weight difference {worst:.1e}")  # shown by pytest -s
        assert worst < WEIGHT_TOL, f"{stage}: weights differ by {worst:.2e}"
        ha, hb = _metrics(a, stage)["history"], _metrics(b, stage)["history"]
        assert len(ha) == len(hb)
        for ra, rb in zip(ha, hb, strict=True):
            assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=LOSS_RTOL)
            if stage == "finetune":
                assert ra["valid_accuracy"] == rb["valid_accuracy"]
                assert ra["valid_loss"] == pytest.approx(rb["valid_loss"], rel=LOSS_RTOL)


def _workflow_after_tokenizer(reference: Path, dest: Path) -> Path:
    """A workflow copy holding `reference`'s split and tokenizer (training inputs identical)."""
    wf = copy_workflow(dest)
    for part in ("results/data", "results/tokenizer"):
        shutil.copytree(reference / part, wf / part)
    for rule in ("preprocess", "build_tokenizer"):  # their benchmarks are outputs too
        (wf / "benchmarks").mkdir(exist_ok=True)
        shutil.copy2(reference / "benchmarks" / f"{rule}.tsv", wf / "benchmarks")
    return wf


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("one"))
    run_snakemake(wf, TARGET, config=BASE)
    return wf


@pytest.mark.e2e
def test_two_processes_learn_what_one_learns(one_process: Path, tmp_path: Path) -> None:
    wf = _workflow_after_tokenizer(one_process, tmp_path / "two")
    proc = run_snakemake(wf, TARGET, config=TWO)
    assert "rule build_tokenizer" not in proc.stdout + proc.stderr
    assert proc.stderr.count("newstopic: 2 training processes: ") == 2  # mlm_pretrain and finetune
    assert "--nproc-per-node=2" in proc.stderr
    # Rank 0 alone logs the story and writes the outputs.
    log = (wf / "logs" / "finetune.log").read_text()
    assert log.count("starting at step 0") == 1, log
    _assert_same_training(one_process, wf)


def _script_process(root: int, name: str) -> int | None:
    """PID of the rule's script among `root`'s descendants (not torchrun nor its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[-2:-1] and cmd[-2].endswith(name.encode()) and b"torch.distributed.run" not in cmd:
            return pid
        todo.extend(children.get(pid, []))
    return None


@pytest.mark.e2e
def test_two_processes_stop_together_and_resume(one_process: Path, tmp_path: Path) -> None:
    wf = _workflow_after_tokenizer(one_process, tmp_path / "stop")
    (wf / "overlay.yaml").write_text(yaml.safe_dump(TWO))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", TARGET]
    cmd += ["--configfile", "config/config.yaml", "overlay.yaml"]
    log = wf / "logs" / "mlm_pretrain.log"
    proc = subprocess.Popen(
        cmd, cwd=wf, env=snakemake_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            script = _script_process(proc.pid, ".train.py")  # the mlm_pretrain job: the only one running
            if script and log.is_file() and re.search(r"step \d+/", log.read_text()):
                os.kill(script, signal.SIGTERM)  # as a local Ctrl-C or a job manager would
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"mlm_pretrain never made progress:\n{log.read_text() if log.is_file() else ''}")
        out = proc.communicate(timeout=300)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    saved = re.search(r"SIGTERM received: stopped at step (\d+) of \d+ with a checkpoint", log.read_text())
    assert saved, log.read_text()
    k = int(saved.group(1))
    assert k > 0
    assert len(list((wf / "scratch" / "mlm_pretrain").glob(f"step-{k:08d}"))) == 1

    run_snakemake(wf, TARGET, config=TWO)  # profiles/default: rerun-incomplete
    assert re.search(rf"resumed at step {k} of \d+", log.read_text()), log.read_text()
    _assert_same_training(one_process, wf)


# -- how config becomes scheduler resources and a launch command ------------------------------


def _resources(**res: object) -> dict:
    cfg = validate_config({"resources": {"finetune": res}})
    return job_resources(cfg["resources"]["finetune"])


def test_cpu_by_default() -> None:
    assert _resources() == {"processes": 1, "nodes": 1, "gpu": 0}


def test_one_process_per_gpu_on_one_node() -> None:
    res = _resources(gpus=4, gpu_model="a100", runtime=600, mem_mb=64000)
    assert res == {"processes": 4, "nodes": 1, "gpu": 4, "gpu_model": "a100", "runtime": 600, "mem_mb": 64000}


def test_several_nodes_use_gres_per_node_and_one_task_per_node() -> None:
    res = _resources(gpus=8, nodes=2)
    assert res == {"processes": 8, "nodes": 2, "mpi": "srun", "tasks": 2, "tasks_per_gpu": 0, "gres": "gpu:8"}
    assert _resources(gpus=2, gpu_model="h100", nodes=3)["gres"] == "gpu:h100:2"


def test_processes_must_match_gpus() -> None:
    with pytest.raises(ConfigError, match=r"resources\.finetune\.processes.*\(3\).*gpus \(2\)"):
        validate_config({"resources": {"finetune": {"gpus": 2, "processes": 3}}})


def test_torchrun_command_one_node() -> None:
    cmd = torchrun_command("/w/.snakemake/scripts/tmp.train.py", 2, 1)
    assert cmd[1:] == [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--standalone",
        "/w/.snakemake/scripts/tmp.train.py",
    ]


def test_torchrun_command_several_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RuntimeError, match="needs a Slurm allocation"):
        torchrun_command("s.py", 4, 2)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    cmd = torchrun_command("s.py", 4, 2, cpus=16)
    assert cmd[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=16"]
    assert "--nnodes=2" in cmd and "--nproc-per-node=4" in cmd and "--rdzv-id=1234" in cmd
    assert cmd[-1] == "s.py"
