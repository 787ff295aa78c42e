"""Rule mlm_pretrain: task-adaptive masked-LM training of the encoder."""

import torch

from newstopic import distributed
from newstopic.atomic import write_json
from newstopic.errors import run_main
from newstopic.logs import setup_logging
from newstopic.pretrain import mlm_pretrain
from newstopic.usage import process_usage

sm = snakemake  # noqa: F821
# Several processes (resources.<rule>.processes/nodes): re-run under torchrun, or join the group.
distributed.start(sm.resources.processes, sm.resources.nodes, sm.threads, sm.params.device)
log = setup_logging(sm.log[0])
distributed.quiet_unless_main(log)
torch.set_num_threads(max(1, sm.threads // sm.resources.processes))
metrics = run_main(
    mlm_pretrain,
    list(sm.input.texts),
    sm.input.tokenizer,
    sm.output.model,
    sm.output.metrics,
    model_cfg=sm.params.model,
    mlm_cfg=sm.params.mlm,
    max_length=sm.params.max_length,
    seed=sm.params.seed,
    scratch_dir=sm.params.scratch,
    checkpoint_every=sm.params.checkpoint_every,
    keep_checkpoints=sm.params.keep_checkpoints,
    log_every=sm.params.log_every,
    device=sm.params.device,
    precision=sm.params.precision,
    engine=sm.params.engine,
    log_file=sm.log[0],
)
log.info("done: %d steps in %.1f s", metrics["steps"], metrics["seconds"])
if hasattr(sm.output, "usage"):  # compare_engines: this job's exact CPU time and peak RSS
    write_json(sm.output.usage, process_usage())
