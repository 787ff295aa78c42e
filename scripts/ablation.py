"""Real-data ablation: baseline vs no-MLM vs MLM vs MLM + pseudo-labels -> docs/results.md.

python scripts/ablation.py --configfile config/dacon.yaml --seeds 1 2 3
"""

import argparse
import shlex
import sys
from pathlib import Path

from newstopic.ablation import run_ablation

REPO = Path(__file__).resolve().parents[1]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--configfile", nargs="+", default=["config/dacon.yaml"])
parser.add_argument(
    "--workdir",
    default="runs/ablation",
    help="where the two runs (and seeds/, the extra seeds' runs) write results/",
)
parser.add_argument("--out", default="docs/results.md")
parser.add_argument("--cores", type=int, default=2)
parser.add_argument(
    "--seeds",
    nargs="*",
    type=int,
    default=[],
    help="extra training seeds (finetune.seed / retrain.seed): finetune and retrain again on the mlm "
    "run's encoder under each, to set the stages' gains against training noise",
)
parser.add_argument(
    "--report-only",
    action="store_true",
    help="rewrite --out from the finished runs in --workdir (wall times from their Snakemake logs)",
)
args = parser.parse_args()
# The command that reproduces the runs (not merely the report).
command = "python scripts/ablation.py " + shlex.join(a for a in sys.argv[1:] if a != "--report-only")
run_ablation(
    REPO,
    [Path(f).resolve() for f in args.configfile],
    Path(args.workdir).resolve(),
    Path(args.out),
    args.cores,
    command.strip(),
    args.report_only,
    args.seeds,
)
