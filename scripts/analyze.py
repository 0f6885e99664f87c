r"""Fit a scaling law to the runs of a study and write plots, tables and a report.

    python scripts/analyze.py --runs runs/demo --output runs/demo/analysis
    python scripts/analyze.py --runs runs/study --output runs/study/analysis_total \
        --metric test_loss --n-convention total --n-bootstrap 2000
    python scripts/analyze.py --wandb my-team/midi-scaling --group lmd --output runs/lmd_analysis

Reads every ``run_summary.json`` (and ``trainer_state.json``) under --runs, or pulls the runs
of a W&B project (one group with --group) into a cache of such folders (--wandb-cache,
default ``~/.cache/midi-scaling/wandb/<entity>/<project>/<group or _all>``) and reads that;
when W&B cannot be reached the last pull is analyzed, with a note. Then it fits
``L(N) = a * N**(-alpha) + c`` with profile-likelihood intervals (see
``analysis.power_law.fit_power_law``), refits it without the largest size to check that it
predicts that size (the report opens with this check), measures the coverage of the alpha
interval on synthetic studies of the same design, summarises any learning-rate sweep and the
rule lr*(N), and writes into --output: fit.json, scaling_plot.png, training_curves.png,
learning_rates.png (with a sweep), summary_table.json, summary_table.md and report.md. With
fewer than 3 sizes no fit is made, the rest is still written and the exit code is 0. Takes
under a minute on a CPU; needs no GPU and no torch.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from analysis.report import COVERAGE_STUDIES, METRICS, N_CONVENTIONS, run_analysis
from analysis.wandb_source import WandbSourceError, parse_project_path, pull_wandb_runs
from common.io import write_bytes_atomic
from configs.cli import run_main


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", type=Path,
                        help="Study folder holding the runs (searched recursively for run_summary.json).")
    source.add_argument("--wandb", metavar="ENTITY/PROJECT",
                        help="Pull the runs from this Weights & Biases project instead (needs `wandb login` "
                             "or WANDB_API_KEY; without network the last pull is analyzed).")
    parser.add_argument("--group", default=None,
                        help="With --wandb: only runs of this W&B group, i.e. this study name (default: all).")
    parser.add_argument("--wandb-cache", "--wandb_cache", type=Path, default=None,
                        help="With --wandb: folder the runs are pulled into and read from (default: "
                             "~/.cache/midi-scaling/wandb/<entity>/<project>/<group or _all>).")
    parser.add_argument("--output", type=Path, required=True, help="Folder for the outputs (created).")
    parser.add_argument("--metric", choices=METRICS, default="eval_loss",
                        help="Loss to fit, nats/token (default: eval_loss).")
    parser.add_argument("--n-convention", "--n_convention", choices=tuple(N_CONVENTIONS), default="non_embedding",
                        help="N = non-embedding (Kaplan et al. 2020), total parameters (Hoffmann et al. 2022) "
                             "or flops: FLOPs per token / 6, head and attention counted (Porian et al. 2024) "
                             "(default: non_embedding).")
    parser.add_argument("--n-bootstrap", "--n_bootstrap", type=int, default=1000,
                        help="Bootstrap refits of the joint law L(N, D) and the IsoFLOP fit in studies with several "
                             "budgets (at most 200); 0 skips them (default: 1000). L(N) has profile-likelihood "
                             "intervals.")
    parser.add_argument("--coverage-studies", "--coverage_studies", type=int, default=COVERAGE_STUDIES,
                        help="Synthetic studies that measure the coverage of the alpha interval for this study's "
                             f"design (about 0.1 s each); 0 skips it (default: {COVERAGE_STUDIES}).")
    parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed (default: 0).")
    args = parser.parse_args(argv)
    if args.n_bootstrap < 0 or args.coverage_studies < 0:
        parser.error(f"--n-bootstrap and --coverage-studies must be >= 0; got {args.n_bootstrap} and "
                     f"{args.coverage_studies}.")
    if args.wandb is None and (args.group is not None or args.wandb_cache is not None):
        parser.error("--group and --wandb-cache only apply with --wandb ENTITY/PROJECT.")
    if args.wandb is not None:
        try:
            parse_project_path(args.wandb)
        except ValueError as err:
            parser.error(str(err))
    return args


def main(argv: list[str] | None = None, *, wandb_api: Any = None) -> int:
    """Run the analysis; ``wandb_api`` replaces ``wandb.Api()`` (tests pass a stand-in)."""
    args = parse_args(argv)
    runs_dir = args.runs
    if args.wandb is not None:
        try:
            pull = pull_wandb_runs(args.wandb, group=args.group, cache_dir=args.wandb_cache, api=wandb_api)
        except WandbSourceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if pull.from_cache:
            print(pull.note, file=sys.stderr)
        else:
            print(f"pulled {pull.n_runs} runs from W&B {args.wandb}"
                  + (f" (group {args.group!r})" if args.group is not None else "") + f" into {pull.cache_dir}")
        runs_dir = pull.cache_dir
    try:
        result = run_analysis(runs_dir, metric=args.metric, n_convention=args.n_convention,
                              n_bootstrap=args.n_bootstrap, seed=args.seed, exclude=[args.output],
                              coverage_studies=args.coverage_studies)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    # --- write outputs
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in result.figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        write_bytes_atomic(out / name, buf.getvalue())
    write_bytes_atomic(out / "fit.json", _json_bytes(result.fit_dict))
    write_bytes_atomic(out / "summary_table.json", _json_bytes(result.table_rows))
    write_bytes_atomic(out / "summary_table.md", result.table_md.encode())
    write_bytes_atomic(out / "report.md", result.report_md.encode())
    if result.compute is not None:
        write_bytes_atomic(out / "compute_optimal.json", _json_bytes(result.compute.to_dict()))
    if not result.sample_quality.empty:
        write_bytes_atomic(out / "sample_quality.json",
                           _json_bytes(json.loads(result.sample_quality.to_json(orient="records"))))

    # --- tell the user
    for run in result.not_used:
        print(f"not used: {run['run_name']}: {run['reason']}")
    fit = result.fit_dict
    if fit["fitted"]:
        lo, hi = fit["alpha_ci"]
        ci = f"[{lo:.4f}, {'inf' if hi is None else f'{hi:.4f}'}]" if lo is not None else "(no interval)"
        print(f"fit on {fit['n_points']} runs: alpha = {fit['alpha']:.4f} {ci}, a = {fit['a']:.4g}, "
              f"c = {fit['c']:.4f}")
        check = result.holdout
        if check is not None and check.inside is not None:
            print(f"prediction check: {check.law} without {check.held_out} predicts {check.predicted:.4f} "
                  f"[{check.interval[0]:.4f}, {check.interval[1]:.4f}], measured {check.measured:.4f} "
                  f"({100 * check.rel_error:+.2f} %, {'inside' if check.inside else 'OUTSIDE'} the interval)")
    else:
        print(f"no fit: {fit['reason']}")
    print(out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
