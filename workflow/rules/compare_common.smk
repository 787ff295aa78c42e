# Helpers of workflow/rules/compare.smk (the engine comparison).

ENGINES = ["loop", "hf"]


wildcard_constraints:
    engine="|".join(ENGINES),


def compare_runs():
    """(stage, engine) of every model the comparison trains."""
    stages = (["mlm"] if config["mlm"]["enabled"] else []) + ["finetune"]
    return [(stage, engine) for stage in stages for engine in ENGINES]


def compare_dir(stage, engine):
    base = f"{RESULTS}/compare_engines/{engine}"
    return f"{base}/mlm" if stage == "mlm" else base


def compare_encoder():
    """Both engines fine-tune the same encoder: the loop's MLM output (when MLM is on)."""
    return (
        [f"{RESULTS}/compare_engines/loop/mlm/model"]
        if config["mlm"]["enabled"]
        else []
    )


def compare_epochs():
    """Epochs of each compared stage (for samples/s)."""
    epochs = {"finetune": config["finetune"]["epochs"]}
    if config["mlm"]["enabled"]:
        epochs["mlm"] = config["mlm"]["epochs"]
    return epochs
