"""Rule make_folds: the train split's rows cut into K stratified folds (newstopic.folds)."""

from newstopic.folds import make_folds
from newstopic.logs import run_rule

sm = snakemake  # noqa: F821
run_rule(sm.log[0], make_folds, sm.input.train, sm.output[0], k=sm.params.folds, seed=sm.params.seed)
