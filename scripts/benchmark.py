r"""Benchmarks that print figures (tests never assert times).

    # data preparation files/s with 1 and 2 processes (median of 3), a plain MidiTok loop, a Lakh estimate
    python scripts/benchmark.py data --source ../shared/data/pop909 --num-proc 1 2
    # peak memory for the corpus and for 20,000 edited copies of its files
    python scripts/benchmark.py memory --source ../shared/data/pop909 --copies 20000

Figures come from whole ``scripts/prepare_data.py`` processes (wall clock, peak memory
sampled with psutil). Temporary data goes to --work (default: a new temporary folder,
removed at the end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.data_prep import LAKH_MIDI_FILES, make_edited_copies, plain_miditok_files_per_sec, run_prepare
from data.sources import list_source_items

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("what", choices=["data", "memory"])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="MIDI folder (default: shared POP909)")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2],
                        help="process counts to time (memory uses the last)")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="data: runs per setting (the median is shown)")
    parser.add_argument("--copies", type=int, default=20_000, help="memory: number of edited copies")
    parser.add_argument("--lakh-cores", type=int, default=16, help="data: cores of the Lakh MIDI estimate")
    parser.add_argument("--work", default=None, help="folder for temporary data (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not Path(args.source).is_dir():
        parser.error(f"--source {args.source} is not a folder; point it at a folder of MIDI files.")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="midi_bench_"))
    try:
        figures = bench_data(args, work) if args.what == "data" else bench_memory(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
