"""Score the pseudo-label teachers on valid -> a markdown table (and JSON beside it).

python scripts/teacher_quality.py runs/ablation/mlm/results --configfile config/dacon.yaml
"""

import argparse
import shlex
import sys
from pathlib import Path

from newstopic.atomic import write_json, write_text
from newstopic.config import load_config
from newstopic.errors import run_main
from newstopic.teachers import quality_markdown, teacher_quality

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results", help="a run's results/ directory (with data/ and finetune/model/)")
parser.add_argument("--configfile", default="config/dacon.yaml", help="the config that run used")
parser.add_argument("--out", default="docs/pseudo_labels.md")
args = parser.parse_args()


def main() -> str:
    config = load_config(args.configfile)
    report = teacher_quality(
        args.results,
        threshold=config["pseudo_label"]["threshold"],
        max_length=config["tokenizer"]["max_length"],
        c=config["baseline"]["c"],
        ngram_max=config["baseline"]["ngram_max"],
        analyzer=config["baseline"]["analyzer"],
    )
    text = quality_markdown(report, "python scripts/teacher_quality.py " + shlex.join(sys.argv[1:]))
    write_text(args.out, text)
    write_json(Path(args.out).with_suffix(".json"), report)
    return text


print(run_main(main))
