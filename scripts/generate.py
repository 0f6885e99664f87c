r"""Sample pieces from a trained model; write MIDI files, piano rolls and a quality report.

    python scripts/generate.py --model runs/demo/demo5 --num-samples 8
    python scripts/generate.py --model runs/demo/demo5 --prompt song.mid --prompt-bars 4 --top-p 0.95
    python scripts/generate.py --model USER/NAME-large --output-dir samples/large --dataset data_out/lmd

Writes sample_NNN.mid and sample_NNN.png, samples.json (per sample: tokens, whether it
decoded, notes, seconds, share of tokens breaking the tokenizer's grammar) and, when the
dataset is known, quality.json (MusPy descriptors vs the test split) into --output-dir
(default <run folder>/samples).
"""

from __future__ import annotations

import sys

from configs.cli import make_parser, parse_strict, run_main
from configs.sampling import SamplingArguments
from generation.pipeline import GenerationArguments, generate_to_folder, summary_lines


def main(argv: list[str] | None = None) -> int:
    parser = make_parser([GenerationArguments, SamplingArguments], description=__doc__)
    args, sampling = parse_strict(parser, sys.argv[1:] if argv is None else argv)
    summary = generate_to_folder(args, sampling)
    print("\n".join(summary_lines(summary)))
    print(f"Samples in {args.resolved_output_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
