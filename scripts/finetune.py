"""Rules finetune and retrain: train the custom classifier with the hand-written loop."""

import torch

from newstopic import distributed
from newstopic.atomic import write_json
from newstopic.errors import run_main
from newstopic.finetune import finetune
from newstopic.logs import setup_logging
from newstopic.usage import process_usage

sm = snakemake  # noqa: F821
# Several processes (resources.<rule>.processes/nodes): re-run under torchrun, or join the group.
distributed.start(sm.resources.processes, sm.resources.nodes, sm.threads, sm.params.device)
log = setup_logging(sm.log[0])
distributed.quiet_unless_main(log)
torch.set_num_threads(max(1, sm.threads // sm.resources.processes))
metrics = run_main(
    finetune,
    list(sm.input.train),
    sm.input.valid,
    sm.input.tokenizer,
    sm.params.encoder,
    sm.output.model,
    sm.output.metrics,
    stage=sm.rule,
    model_cfg=sm.params.model,
    train_cfg=sm.params.train,
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
log.info("done: valid accuracy %.4f", metrics["valid_accuracy"])
if hasattr(sm.output, "usage"):  # compare_engines: this job's exact CPU time and peak RSS
    write_json(sm.output.usage, process_usage())
