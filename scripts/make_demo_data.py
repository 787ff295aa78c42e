"""Regenerate the embedded demo dataset in data/demo/ (deterministic)."""

import argparse

from newstopic.demo import write_demo_data

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="data/demo")
parser.add_argument("--train-per-topic", type=int, default=200)
parser.add_argument("--test-per-topic", type=int, default=50)
parser.add_argument("--seed", type=int, default=2021)
args = parser.parse_args()
write_demo_data(args.out, args.train_per_topic, args.test_per_topic, args.seed)
