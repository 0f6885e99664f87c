r"""Prepare a packed, tokenized dataset from a MIDI/ABC corpus.

    python scripts/prepare_data.py --source builtin --output data_out/builtin
    python scripts/prepare_data.py --source ../shared/data/pop909 --output data_out/pop909 \
        --block-size 1024 --num-proc 2 --augment-transpose 3 --bpe-vocab-size 2000

Writes an Arrow DatasetDict (train/validation/test blocks of --block-size int32 ids),
tokenizer.json, manifest.jsonl (every input item: kept or skipped with a reason) and
stats.json into --output; --push-to-hub USER/NAME then shares it on the Hub.
"""

from __future__ import annotations

import json
import shlex
import sys

from configs.cli import make_parser, parse_strict, run_main
from data.pipeline import DataArguments, prepare_dataset


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = parse_strict(make_parser([DataArguments], __doc__.split("\n\n")[0]), argv)
    stats = prepare_dataset(args, command_line=shlex.join(["scripts/prepare_data.py", *argv]))
    summary = {s: {k: v[k] for k in ("pieces", "tokens", "blocks", "dropped_tokens")}
               for s, v in stats["splits"].items()}
    print(json.dumps({"items_seen": stats["items_seen"], "items_kept": stats["items_kept"],
                      "skipped_by_reason": stats["skipped_by_reason"], "splits": summary,
                      "vocab_size": stats["vocab_size"], "items_per_sec": round(stats["items_per_sec"], 1)},
                     indent=2))
    print(f"Dataset written to {args.output}")
    if args.push_to_hub:
        from sharing.push import push_dataset

        print(f"Pushed to {push_dataset(args.output, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
