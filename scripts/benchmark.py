r"""Benchmarks that print figures (tests never assert times).

    # data preparation files/s with 1 and 2 processes (median of 3), a plain MidiTok loop, a Lakh estimate
    python scripts/benchmark.py data --source ../shared/data/pop909 --num-proc 1 2
    # peak memory for the corpus and for 20,000 edited copies of its files
    python scripts/benchmark.py memory --source ../shared/data/pop909 --copies 20000
    # training tokens/s: scripts/train.py (HF Trainer) against a bare PyTorch loop, per demo size
    python scripts/benchmark.py train --dataset demo/data --study configs/demo_study.yaml --steps 60
    # token budgets as cooldown branches of one WSD run per size against separate cosine runs: tokens
    # trained and each budget's eval_loss (trains configs/demo_wsd_study.yaml twice)
    python scripts/benchmark.py branches --dataset demo/data --study configs/demo_wsd_study.yaml --work runs/wsd
    # GPU: tokens/s, MFU and peak memory of the five study sizes at block_size 1024, and the
    # projected time of the whole study on 100M tokens (prepares POP909 with transpositions first)
    python scripts/benchmark.py gpu --source ../shared/data/pop909 --num-proc 16 --steps 10

Figures come from whole ``scripts/prepare_data.py`` processes (wall clock, peak memory
sampled with psutil). Temporary data goes to --work (default: a new temporary folder,
removed at the end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from benchmarks.data_prep import LAKH_MIDI_FILES, make_edited_copies, plain_miditok_files_per_sec, run_prepare
from configs.models import STUDY_SIZES
from data.sources import list_source_items
from training.study import RESULTS_FILENAME

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pop909"


MEMORY_HEADER = f"{'main RSS':>9} {'main anon':>10} {'tree anon':>10} {'tree mapped':>11}"


MEMORY_FIELDS = ("peak_rss_main_mb", "peak_anon_main_mb", "peak_anon_tree_mb", "peak_file_tree_mb")


def _memory(run) -> dict:
    return {k: getattr(run, k) for k in MEMORY_FIELDS}


def _memory_cells(r: dict) -> str:
    return " ".join(f"{r[k]:>{w}.0f}" for k, w in zip(MEMORY_FIELDS, (9, 10, 10, 11), strict=True))


def bench_data(args: argparse.Namespace, work: Path) -> dict:
    run_prepare(args.source, work / "warm_up", args.num_proc[0], args.block_size)  # file cache, imports
    shutil.rmtree(work / "warm_up")
    runs: dict[int, list] = {n: [] for n in args.num_proc}
    for _ in range(args.repeat):  # interleaved, so a drift in machine speed hits every setting alike
        for n in args.num_proc:
            runs[n].append(run_prepare(args.source, work / f"prep_{n}", n, args.block_size, poll_sec=0.5))
            shutil.rmtree(work / f"prep_{n}")
    rows = []
    for n, rs in runs.items():
        run = sorted(rs, key=lambda r: r.wall_sec)[len(rs) // 2]  # the median run
        rows.append({"num_proc": n, "wall_sec": run.wall_sec, "files_per_sec": run.files_per_sec,
                     "notes_per_sec": run.notes / run.wall_sec, **_memory(run), "items": run.items,
                     "wall_sec_all_runs": [r.wall_sec for r in rs]})
    files = [Path(i["path"]) for i in list_source_items(args.source) if not i["abc"]]
    floor, encoded = plain_miditok_files_per_sec(files)
    print(f"source: {args.source} ({rows[0]['items']} items), block_size {args.block_size}; "
          f"median of {args.repeat} whole-process runs after a warm-up")
    print(f"{'num_proc':>8} {'wall s':>8} {'files/s':>8} {'notes/s':>9} {'speedup':>8} {MEMORY_HEADER}")
    base = rows[0]["files_per_sec"] / rows[0]["num_proc"]
    for r in rows:
        r["speedup_vs_first"] = r["files_per_sec"] / rows[0]["files_per_sec"]
        print(f"{r['num_proc']:>8} {r['wall_sec']:>8.1f} {r['files_per_sec']:>8.1f} {r['notes_per_sec']:>9.0f} "
              f"{r['speedup_vs_first']:>8.2f} {_memory_cells(r)}")
    print(f"plain MidiTok loop (Score + encode, 1 process, nothing written): {floor:.1f} files/s "
          f"({encoded}/{len(files)} encoded); the pipeline with {rows[0]['num_proc']} process(es) runs at "
          f"{rows[0]['files_per_sec'] / floor:.0%} of it")
    best = rows[-1]
    efficiency = best["files_per_sec"] / (best["num_proc"] * base)
    lakh_rate = args.lakh_cores * base * efficiency
    lakh_hours = LAKH_MIDI_FILES / lakh_rate / 3600
    print(f"Lakh MIDI estimate: {LAKH_MIDI_FILES:,} files on {args.lakh_cores} cores ~ {lakh_hours:.1f} h "
          f"({lakh_rate:.0f} files/s), assuming files cost what these do on average and the parallel "
          f"efficiency measured at {best['num_proc']} processes ({efficiency:.0%}) holds.")
    return {"rows": rows, "plain_miditok_files_per_sec": floor, "lakh_cores": args.lakh_cores,
            "lakh_estimate_hours": lakh_hours}


def bench_memory(args: argparse.Namespace, work: Path) -> dict:
    files = [Path(i["path"]) for i in list_source_items(args.source) if not i["abc"]]
    print(f"Writing {args.copies:,} edited copies of {len(files)} files into {work / 'copies'} ...", flush=True)
    make_edited_copies(files, args.copies, work / "copies")
    results = {}
    for name, source in (("original", args.source), ("copies", work / "copies")):
        run = run_prepare(source, work / f"prep_{name}", args.num_proc[-1], args.block_size)
        results[name] = {"items": run.items, "wall_sec": run.wall_sec, "files_per_sec": run.files_per_sec,
                         **_memory(run)}
        shutil.rmtree(work / f"prep_{name}")
    print(f"{'corpus':>10} {'items':>7} {'wall s':>8} {'files/s':>8} {MEMORY_HEADER}")
    for name, r in results.items():
        print(f"{name:>10} {r['items']:>7} {r['wall_sec']:>8.1f} {r['files_per_sec']:>8.1f} {_memory_cells(r)}")
    print("Peaks over the run, MiB. main RSS: resident memory of the main process, mapped files included; "
          "anon: heap memory (Python objects, buffers) of the main process and summed over it and its workers; "
          "mapped: Arrow files read through mmap, summed over the tree (page cache the kernel can drop).")
    return results


def bench_train(args: argparse.Namespace, work: Path) -> dict:
    from benchmarks.training_loop import trainer_tokens_per_second
    from configs.models import build_model_config, count_parameters
    from configs.study import StudyArguments, TrainingArguments, parse_with_study
    from data.prepared import read_prepared_dataset
    from training.batch import check_plan
    from training.run import RunArguments

    dataset = read_prepared_dataset(args.dataset)
    _, study, _ = parse_with_study((RunArguments, StudyArguments, TrainingArguments),
                                   ["--size", "x", "--dataset", args.dataset, "--study", args.study,
                                    "--output_dir", str(work)])
    layout, _ = check_plan(dataset, study)
    print(f"dataset {args.dataset}, study {args.study}: {args.steps} steps x {layout.tokens_per_step} tokens "
          f"({layout.per_device_batch_size} x {layout.gradient_accumulation_steps} accumulation x "
          f"{layout.block_size}), one process, W&B off; median of {args.repeat} interleaved pairs")
    print(f"{'size':>6} {'N':>9} {'Trainer tok/s':>14} {'bare loop tok/s':>16} {'ratio':>6}")
    rows = []
    for size in args.sizes:
        n = count_parameters(build_model_config(size, dataset.vocab_size, dataset.block_size, 1, 2, 0))
        pairs = []
        for _ in range(args.repeat):  # bare, Trainer, bare, Trainer, ...: drift hits both alike
            bare = subprocess.run([sys.executable, "-m", "benchmarks.training_loop", "--size", size, "--dataset",
                                   args.dataset, "--study", args.study, "--steps", str(args.steps)],
                                  cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
            if bare.returncode != 0:
                raise RuntimeError(f"bare loop failed for {size}:\n{bare.stderr[-2000:]}")
            bare_row = json.loads(bare.stdout.strip().splitlines()[-1])
            trainer_row = trainer_tokens_per_second(size, args.dataset, args.study, args.steps,
                                                    layout.tokens_per_step)
            pairs.append((trainer_row["tokens_per_second"] / bare_row["tokens_per_second"], trainer_row, bare_row))
        ratio, trainer_row, bare_row = sorted(pairs, key=lambda p: p[0])[len(pairs) // 2]  # the median pair
        rows.append({"size": size, "N": n["n_params_non_embedding"], "trainer": trainer_row, "bare_loop": bare_row,
                     "ratio": ratio, "ratios_all_pairs": [p[0] for p in pairs]})
        print(f"{size:>6} {n['n_params_non_embedding']:>9,} {trainer_row['tokens_per_second']:>14,.0f} "
              f"{bare_row['tokens_per_second']:>16,.0f} {ratio:>6.3f}", flush=True)
    return {"steps": args.steps, "rows": rows}


def bench_gpu(args: argparse.Namespace, work: Path) -> dict:
    """The study's five sizes at block_size 1024 with the study's 512K-token batch, W&B,
    evaluation and checkpoints off: the throughput a real study gets."""
    data = Path(args.dataset) if args.dataset != "demo/data" else work / "gpu_data"
    if not (data / "stats.json").is_file():
        run_prepare(args.source, data, args.num_proc[-1], 1024, extra=["--augment-transpose", "3"])
    rows = []
    print(f"dataset {data}; {args.steps} steps per size; study configs/study.yaml")
    print(f"{'size':>7} {'N':>12} {'tokens/s':>10} {'MFU':>6} {'peak GB':>8} {'100M tokens':>12}")
    for size in args.sizes:
        out = work / f"gpu_{size}"
        cmd = [sys.executable, str(Path(__file__).resolve().with_name("train.py")), "--size", size,
               "--dataset", str(data), "--output-dir", str(out), "--max_tokens",
               str(args.steps * args.global_batch_tokens), "--global_batch_tokens", str(args.global_batch_tokens),
               "--eval_steps", "0", "--save_strategy", "no", "--no-wandb", "--disable_tqdm", "true",
               *args.train_args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{size:>7} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
            rows.append({"size": size, "error": proc.stderr[-2000:]})
            continue
        summary = json.loads((out / "run_summary.json").read_text())
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        peak_gb = max((e.get("gpu_max_memory_allocated_gb", 0.0) for e in history), default=0.0)
        hours = 1e8 / summary["tokens_per_second"] / 3600
        rows.append({"size": size, "N": summary["n_params_non_embedding"], "tokens_per_second":
                     summary["tokens_per_second"], "mfu": summary["mfu"], "peak_memory_gb": peak_gb,
                     "hours_per_100M_tokens": hours, "device": summary.get("device_name")})
        mfu = f"{summary['mfu']:.1%}" if summary["mfu"] is not None else "n/a"
        print(f"{size:>7} {summary['n_params_non_embedding']:>12,} {summary['tokens_per_second']:>10,.0f} "
              f"{mfu:>6} {peak_gb:>8.1f} {hours:>11.2f}h", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    total = sum(r.get("hours_per_100M_tokens", 0.0) for r in rows)
    print(f"Projected whole study, {len(rows)} sizes x 100M tokens each: {total:.2f} h on this device")
    return {"rows": rows, "study_hours_100M_tokens": total}


def bench_branches(args: argparse.Namespace, work: Path) -> dict:
    """Train the study's extra token budgets as separate runs (cooldown_fraction 0) and as cooldown
    branches (0.2, or the study's), once per seed, then compare what each trained and each budget's
    eval_loss, beside the difference between two seeds of the separate runs (the noise)."""
    study = yaml.safe_load(Path(args.study).read_text())
    fraction = study.get("cooldown_fraction") or 0.2
    seeds = args.seeds or [study.get("seed", 42)]
    runner = Path(__file__).resolve().with_name("run_study.py")
    summaries, seconds = {}, {}
    for seed in seeds:
        for label, cooldown in (("separate", 0.0), ("branches", fraction)):
            out = work / f"seed{seed}" / label
            cmd = [sys.executable, str(runner), "--dataset", args.dataset, "--study", args.study, "--output-dir",
                   str(out), "--cooldown_fraction", str(cooldown), "--parallel", str(args.parallel), "--seed",
                   str(seed), "--no-wandb", "--disable_tqdm", "true", *(["--sizes", *args.sizes] if args.sizes else [])]
            print(f"{label}, seed {seed}: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            results = json.loads((out / RESULTS_FILENAME).read_text())
            summaries[label, seed] = {
                r["run_name"]: json.loads((Path(r["run_dir"]) / "run_summary.json").read_text())
                for r in results if r["status"] in ("finished", "existing") and r["max_tokens"]}
            seconds[label, seed] = sum(r.get("seconds") or 0.0 for r in results if r["max_tokens"])

    def own(summary: dict) -> int:  # tokens the run trained itself (a branch: its cooldown only)
        return summary["tokens_trained"] - (summary.get("branch_step") or 0) * summary["global_batch_tokens"]

    first = seeds[0]
    tokens = {label: sum(own(s) for s in summaries[label, first].values()) for label in ("separate", "branches")}
    branches = {n: s for n, s in summaries["branches", first].items() if s.get("branch_of")}
    names = sorted(branches, key=lambda n: (branches[n]["size"], branches[n]["tokens_trained"]))
    rows = []
    print(f"{'run':>16} {'D':>10} " + " ".join(f"{'sep s' + str(sd):>10} {'branch':>8} {'diff':>7}" for sd in seeds)
          + ("  seed noise" if len(seeds) > 1 else ""))
    for name in names:
        row = {"run_name": name, "D": summaries["branches", first][name]["tokens_trained"]}
        cells = []
        for seed in seeds:
            sep, branch = summaries["separate", seed][name]["eval_loss"], summaries["branches", seed][name]["eval_loss"]
            row[f"seed{seed}"] = {"separate": sep, "branch": branch, "relative_difference": branch / sep - 1}
            cells.append(f"{sep:>10.4f} {branch:>8.4f} {branch / sep - 1:>+7.2%}")
        if len(seeds) > 1:  # how far two seeds of the same cosine run land apart
            seps = [row[f"seed{sd}"]["separate"] for sd in seeds]
            row["seed_noise"] = (max(seps) - min(seps)) / min(seps)
            cells.append(f"{row['seed_noise']:>10.2%}")
        rows.append(row)
        print(f"{name:>16} {row['D']:>10,} " + " ".join(cells))
    print(f"tokens trained for these budgets: separate runs {tokens['separate']:,}, branches {tokens['branches']:,} "
          f"({tokens['separate'] / tokens['branches']:.2f}x fewer)")
    for seed in seeds:  # a study reused from an earlier call trained nothing this time
        if seconds["separate", seed] and seconds["branches", seed]:
            print(f"seed {seed}: the runs took {seconds['separate', seed]:.0f} s separate, "
                  f"{seconds['branches', seed]:.0f} s as branches (summed over runs; --parallel {args.parallel})")
    differences = [abs(r[f"seed{sd}"]["relative_difference"]) for r in rows for sd in seeds]
    mean_differences = [abs(np.mean([r[f"seed{sd}"]["relative_difference"] for sd in seeds])) for r in rows]
    print(f"|branch / separate - 1| of eval_loss: largest {max(differences):.2%}, median {np.median(differences):.2%}"
          + (f"; averaged over the seeds, largest {max(mean_differences):.2%}; seed noise of the separate runs: "
             f"median {np.median([r['seed_noise'] for r in rows]):.2%}, largest "
             f"{max(r['seed_noise'] for r in rows):.2%}" if len(seeds) > 1 else ""))
    return {"rows": rows, "tokens": tokens, "seconds": {f"{k[0]}_seed{k[1]}": v for k, v in seconds.items()},
            "cooldown_fraction": fraction, "seeds": seeds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["data", "memory", "train", "gpu", "branches"],
                        help="data: files/s per --num-proc and a plain MidiTok loop; memory: peak memory on "
                             "--source and on --copies edited copies; train: Trainer vs bare loop tokens/s per "
                             "size; gpu: tokens/s, MFU, memory of the study sizes and the study's projected time; "
                             "branches: cooldown branches against separate runs (tokens, eval_loss per budget)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="MIDI folder (default: shared POP909)")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2],
                        help="process counts to time (memory uses the last)")
    parser.add_argument("--block-size", type=int, default=1024, help="data/memory: block size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="data/train: runs per setting (the median is shown)")
    parser.add_argument("--copies", type=int, default=20_000, help="memory: number of edited copies")
    parser.add_argument("--lakh-cores", type=int, default=16, help="data: cores of the Lakh MIDI estimate")
    parser.add_argument("--dataset", default="demo/data", help="train: a prepared dataset (make demo makes this one)")
    parser.add_argument("--study", default="configs/demo_study.yaml", help="train: the study file")
    parser.add_argument("--sizes", nargs="+", default=None,
                        help="train: sizes to time (default demo1..demo5); gpu: default tiny..xl")
    parser.add_argument("--steps", type=int, default=60, help="train/gpu: optimizer steps per measurement")
    parser.add_argument("--global-batch-tokens", type=int, default=524288, help="gpu: tokens per step")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="gpu: extra scripts/train.py flags, e.g. --train-args --torch_compile true")
    parser.add_argument("--work", default=None, help="folder for temporary data (default: a temporary folder)")
    parser.add_argument("--parallel", type=int, default=1, help="branches: runs trained at once")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="branches: seeds, each a pair of studies (default: the study's seed)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.sizes is None and args.what != "branches":  # branches: the study file's sizes
        args.sizes = list(STUDY_SIZES) if args.what == "gpu" else [f"demo{i}" for i in range(1, 6)]
    if args.what in ("data", "memory") and not Path(args.source).is_dir():
        parser.error(f"--source {args.source} is not a folder; point it at a folder of MIDI files.")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="midi_bench_"))
    try:
        figures = {"data": bench_data, "memory": bench_memory, "train": bench_train,
                   "gpu": bench_gpu, "branches": bench_branches}[args.what](args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
