"""Print N (non-embedding) and total parameters of every model size for a dataset.

    python scripts/model_sizes.py --dataset demo/data
    python scripts/model_sizes.py --vocab-size 518 --block-size 1024

The vocabulary size and block size come from the prepared dataset (its stats.json) or
from the flags; the embedding share of the total depends on both.
"""

from __future__ import annotations

import argparse
import sys

from configs.cli import run_main
from configs.models import size_table
from data.prepared import read_prepared_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="Prepared dataset folder (reads vocab_size and block_size).")
    parser.add_argument("--vocab-size", "--vocab_size", type=int, help="Vocabulary size (without --dataset).")
    parser.add_argument("--block-size", "--block_size", type=int, default=1024, help="Sequence length (default 1024).")
    parser.add_argument("--sizes", nargs="+", help="Sizes to list (default: all in configs/sizes/).")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.dataset:
        dataset = read_prepared_dataset(args.dataset)  # FileNotFoundError says how to make one
        vocab_size, block_size = dataset.vocab_size, dataset.block_size
    elif args.vocab_size:
        vocab_size, block_size = args.vocab_size, args.block_size
    else:
        parser.error("give --dataset DIR or --vocab-size V")
    print(f"vocab_size={vocab_size}, block_size={block_size}\n")
    print("| size | n_layer | n_embd | n_head | d_ff | N non-embedding | N total |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in size_table(vocab_size, block_size, args.sizes):
        print(f"| {r['size']} | {r['n_layer']} | {r['n_embd']} | {r['n_head']} | {r['n_inner']} "
              f"| {r['n_params_non_embedding']:,} | {r['n_params']:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
