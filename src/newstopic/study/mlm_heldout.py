"""The masked-LM loss of finished MLM runs, measured the same way for each: eval mode (no
dropout noise, which inflates the training log's loss by a run-dependent amount), the valid
split's titles, masks drawn from one fixed seed.

    python -m newstopic.study.mlm_heldout runs/ablation/mlm /work/exp/nd10 [--mask-prob 0.4]

Each argument is a work directory of a finished `mlm_pretrain` (results/mlm/model, with its
tokenizer, and results/data/valid.parquet). The valid titles are task text that MLM also
trained on (TAPT uses all of it), so this is the fit of the encoder to the task's text, not
to unseen text: it compares runs, it does not measure generalisation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from newstopic.data import encode, step_generator
from newstopic.formats import read_titles
from newstopic.pretrain import masked_batch, mlm_loss

BATCH = 256


@torch.no_grad()
def heldout_loss(run_dir: Path, mask_prob: float, seed: int = 0, max_length: int = 32) -> float:
    """Mean cross-entropy over the masked positions of the run's valid titles."""
    model_dir = run_dir / "results" / "mlm" / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    ids = encode(tokenizer, read_titles([str(run_dir / "results" / "data" / "valid.parquet")]), max_length)
    vocab_size = model.get_input_embeddings().num_embeddings
    total, count = 0.0, 0
    for i, start in enumerate(range(0, len(ids), BATCH)):
        batch = masked_batch(
            ids[start : start + BATCH], tokenizer, vocab_size, mask_prob, step_generator(seed, i)
        )
        loss, items = mlm_loss(model, batch)
        total, count = total + float(loss), count + items
    return total / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="work directories of finished MLM runs")
    parser.add_argument("--mask-prob", type=float, default=0.4, help="config/dacon.yaml's mlm.mask_prob")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(f"{run}: masked-LM loss {heldout_loss(run, args.mask_prob):.4f} (eval mode, valid titles)")


if __name__ == "__main__":
    main()
