r"""Push a finished run or a prepared dataset to the Hugging Face Hub, with a generated card.

    python scripts/push_to_hub.py --run runs/study/small --repo-id me/midi-gpt2-small \
        --fit runs/study/analysis/fit.json
    python scripts/push_to_hub.py --dataset data_out/lmd --repo-id me/lmd-remi-1024 --private
    python scripts/push_to_hub.py --study runs/demo --repo-id me/midi-gpt2 --fit runs/demo/analysis  # -<size>
    python scripts/push_to_hub.py --run runs/demo/demo1 --stage-only /tmp/demo1_hub   # offline, no token

--run uploads the weights, config.json (+ generation_config.json), tokenizer.json,
run_summary.json, trainer_state.json and a README.md model card (with the fitted law of
--fit, the fit.json of scripts/analyze.py). --dataset uploads the splits as Parquet plus
tokenizer.json, stats.json, manifest.jsonl and a README.md dataset card. --stage-only DIR
writes the folder that would be uploaded and stops (for --dataset: the files beside the
splits). Logs in with HF_TOKEN or `hf auth login`. Takes seconds plus the upload.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from configs.cli import run_main
from sharing.cards import DEFAULT_LICENSE
from sharing.push import (
    README_FILENAME,
    Upload,
    dataset_upload,
    model_upload,
    push_dataset,
    push_model,
    repo_id_for_size,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", type=Path, metavar="RUN_DIR",
                      help="Run folder of scripts/train.py (its --output-dir).")
    what.add_argument("--dataset", type=Path, metavar="DATA_DIR",
                      help="Dataset folder of scripts/prepare_data.py (its --output).")
    what.add_argument("--study", type=Path, metavar="STUDY_DIR",
                      help="Study folder of scripts/run_study.py: each size's model (its run on the study's budget "
                           "at its chosen rate) to its own repository, USER/NAME-<size>.")
    parser.add_argument("--repo-id", "--repo_id", metavar="USER/NAME",
                        help="Hub repository (created if missing); with --study, the prefix of one repository per "
                             "size. Required unless --stage-only.")
    parser.add_argument("--fit", type=Path, metavar="FIT_JSON",
                        help="fit.json of scripts/analyze.py (or its output folder); puts the study's "
                             "fitted law into the model card.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--license", default=DEFAULT_LICENSE,
                        help=f"Hub license id for the card (default: {DEFAULT_LICENSE}).")
    parser.add_argument("--revision", metavar="BRANCH", help="Branch to push a model to (default: main).")
    parser.add_argument("--stage-only", "--stage_only", type=Path, metavar="DIR",
                        help="Write the folder that would be pushed into DIR (new or empty); no network.")
    args = parser.parse_args(argv)
    if not args.repo_id and not args.stage_only:
        parser.error("--repo-id USER/NAME is required (or pass --stage-only DIR to push nothing).")
    if args.dataset and (args.fit or args.revision):
        parser.error("--fit and --revision apply to --run only.")
    return args


def load_fit(path: Path) -> dict:
    """The fit.json of scripts/analyze.py, from the file or its folder.

    Raises:
        FileNotFoundError: no fit.json there; says what to run.
    """
    file = path / "fit.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"No fit.json at {path}. Fit the study first:\n"
                                f"  python scripts/analyze.py --runs <study folder> --output {file.parent}")
    return json.loads(file.read_text())


def write_upload(upload: Upload, folder: Path) -> None:
    """Copy the files of ``upload`` and write its card into ``folder``: what the push would send.

    Raises:
        ValueError: ``folder`` exists and is not empty.
    """
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"--stage-only folder {folder} is not empty; choose a new folder or remove it.")
    folder.mkdir(parents=True, exist_ok=True)
    for name in upload.files:
        shutil.copy2(upload.folder / name, folder / name)
    upload.card.save(folder / README_FILENAME)


def _push_run(run: Path, repo_id: str | None, stage_only: Path | None, fit: dict | None,
              args: argparse.Namespace) -> None:
    """Push one run folder (or stage it into ``stage_only``)."""
    if stage_only:
        write_upload(model_upload(run, fit, license=args.license, repo_id=repo_id), stage_only)
        print(f"staged {stage_only} (nothing pushed):")
        for f in sorted(stage_only.iterdir()):
            print(f"  {f.name} ({f.stat().st_size:,} bytes)")
        return
    url = push_model(run, repo_id, fit=fit, private=args.private, revision=args.revision, license=args.license)
    print(f"pushed run {run} to https://huggingface.co/{repo_id}\ncommit: {url}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fit = load_fit(args.fit) if args.fit else None
    if fit is not None and not fit.get("fitted"):
        print(f"note: {args.fit} holds no fitted law ({fit.get('reason', 'no reason given')}); "
              "the card will not show one.")
    if not args.stage_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # the push functions log each file
    if args.study:  # each size's model to its own repository, as scripts/run_study.py --push-to-hub does
        from training.study import chosen_runs

        runs = chosen_runs(args.study)
        if not runs:
            raise ValueError(f"{args.study} has no finished run on the study's own budget to push yet.")
        for size, run in runs.items():
            _push_run(run, repo_id_for_size(args.repo_id, size) if args.repo_id else None,
                      args.stage_only / size if args.stage_only else None, fit, args)
        return 0
    if args.run:
        _push_run(args.run, args.repo_id, args.stage_only, fit, args)
        return 0
    if args.stage_only:
        write_upload(dataset_upload(args.dataset, license=args.license, repo_id=args.repo_id), args.stage_only)
        print(f"staged {args.stage_only} (nothing pushed):")
        for f in sorted(args.stage_only.iterdir()):
            print(f"  {f.name} ({f.stat().st_size:,} bytes)")
        print("  + the train/validation/test splits, converted to Parquet by DatasetDict.push_to_hub")
        return 0
    url = push_dataset(args.dataset, args.repo_id, private=args.private, license=args.license)
    print(f"pushed dataset {args.dataset} to https://huggingface.co/datasets/{args.repo_id}\ncommit: {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
