"""Pseudo-label gain vs training noise: finetune and retrain under several training seeds,
reusing a finished ablation run's split, tokenizer, MLM encoder and baseline -> docs/pseudo_seeds.md.

python scripts/seed_study.py --configfile config/dacon.yaml --seeds 1 2 3 4
"""

import argparse
import shlex
import sys
from pathlib import Path

from newstopic.seed_study import PSEUDO_VARIANTS, run_seed_study

REPO = Path(__file__).resolve().parents[1]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--configfile", nargs="+", default=["config/dacon.yaml"])
parser.add_argument("--source", default="runs/ablation/mlm", help="a finished run of scripts/ablation.py")
parser.add_argument(
    "--workdir",
    default="runs/seeds",
    help="where each seed's runs write results/; finished seeds there are read, not rerun "
    "(use a fresh one for another --source)",
)
parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4])
parser.add_argument(
    "--variants",
    nargs="+",
    choices=list(PSEUDO_VARIANTS),
    default=list(PSEUDO_VARIANTS),
    help="pseudo-label variants to retrain (the first one also trains each seed's finetune)",
)
parser.add_argument("--out", default="docs/pseudo_seeds.md")
parser.add_argument("--cores", type=int, default=2)
args = parser.parse_args()
run_seed_study(
    REPO,
    Path(args.source).resolve(),
    [Path(f).resolve() for f in args.configfile],
    Path(args.workdir).resolve(),
    args.seeds,
    Path(args.out),
    args.cores,
    ("python scripts/seed_study.py " + shlex.join(sys.argv[1:])).strip(),
    args.variants,
)
