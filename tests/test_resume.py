"""A preparation killed halfway resumes from its saved shards and ends byte-identical."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from datasets import load_from_disk
from tests_helpers import POP909, REPO

from data.pipeline import DataArguments, prepare_dataset, work_plan
from data.processing import PieceLimits
from data.sources import list_source_items

# Run preparation in a child process that SIGKILLs itself once its second shard is saved
# (tokenize_in_shards loads each shard back right after renaming it into place): a kill between
# shards at a fixed point, whatever the machine's load (the pipeline itself is unchanged).
DIES_AFTER_TWO_SHARDS = """
import json, os, signal, sys
import data.pipeline as pipeline
from data.pipeline import DataArguments, prepare_dataset

real_load = pipeline.load_from_disk
loaded = []

def load_then_die(path, *args, **kwargs):
    loaded.append(path)
    if len(loaded) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_load(path, *args, **kwargs)

pipeline.load_from_disk = load_then_die
prepare_dataset(DataArguments(**json.loads(sys.argv[1])))
"""


def _args(corpus: Path, out: Path, **overrides) -> dict:
    args = {"source": str(corpus), "output": str(out), "block_size": 64, "num_proc": 1, "shard_size": 3,
            "val_fraction": 0.25, "test_fraction": 0.25, "augment_transpose": 1, "seed": 0,
            "piece_timeout_sec": 0.0}
    return {**args, **overrides}


def _finished_shards(out: Path) -> list[Path]:
    shards = out / "_work" / "shards"
    return [d for d in shards.iterdir() if not d.name.endswith(".tmp")] if shards.is_dir() else []


def _content(out: Path) -> dict:
    ds = load_from_disk(str(out))
    stats = json.loads((out / "stats.json").read_text())
    for key in ("elapsed_sec", "items_per_sec", "arguments", "command_line", "items_resumed", "items_tokenized"):
        stats.pop(key)
    return {"ids": {s: np.asarray(d["input_ids"]) for s, d in ds.items()},
            "manifest": (out / "manifest.jsonl").read_text(), "stats": stats,
            "tokenizer": (out / "tokenizer.json").read_text()}


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, pop909_files, make_corpus, capsys):
    corpus = tmp_path / "corpus"
    make_corpus(corpus, pop909_files)  # 14 items -> shards of 3: five shards
    reference = _content(Path(prepare_dataset(DataArguments(**_args(corpus, tmp_path / "ref")))["arguments"]
                              ["output"]))

    out = tmp_path / "resumed"
    child = subprocess.run([sys.executable, "-c", DIES_AFTER_TWO_SHARDS, json.dumps(_args(corpus, out))],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    done = _finished_shards(out)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    assert len(done) == 2, done  # really stopped halfway: 2 of 5 shards
    assert not (out / "stats.json").exists()

    capsys.readouterr()
    stats = prepare_dataset(DataArguments(**_args(corpus, out)))
    assert stats["items_resumed"] == 6  # the 2 shards of the killed run were reused, not recomputed
    assert f"Resumed: {stats['items_resumed']} of 15 items" in capsys.readouterr().out
    # the rate counts only this run's own items over its own time
    assert stats["items_tokenized"] == 15 - stats["items_resumed"]
    assert stats["items_per_sec"] == pytest.approx(stats["items_tokenized"] / stats["elapsed_sec"])
    assert not (out / "_work").exists()
    resumed = _content(out)
    assert resumed["ids"].keys() == reference["ids"].keys()
    for split, ids in reference["ids"].items():
        np.testing.assert_array_equal(resumed["ids"][split], ids, err_msg=split)
    assert resumed["manifest"] == reference["manifest"]
    assert resumed["stats"] == reference["stats"]
    assert resumed["tokenizer"] == reference["tokenizer"]


def test_work_plan_follows_items_tokenizer_and_limits(tmp_path, pop909_files):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in pop909_files[:3]:
        (corpus / p.name).write_bytes(p.read_bytes())
    items = list_source_items(corpus)
    plan = work_plan(items, "sha", PieceLimits(), 120.0)
    assert plan == work_plan(list_source_items(corpus), "sha", PieceLimits(), 120.0)
    assert plan != work_plan(items, "other", PieceLimits(), 120.0)
    assert plan != work_plan(items, "sha", PieceLimits(over_limit="truncate"), 120.0)
    assert plan != work_plan(items[:2], "sha", PieceLimits(), 120.0)
    (corpus / pop909_files[0].name).write_bytes(pop909_files[1].read_bytes())  # a file edited in place
    assert plan != work_plan(list_source_items(corpus), "sha", PieceLimits(), 120.0)


def test_work_left_under_another_plan_is_not_reused(tmp_path, pop909_files, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in pop909_files[:6]:
        (corpus / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    stale = out / "_work" / "shards" / "000000000-000000006"
    stale.mkdir(parents=True)  # would be loaded (and fail) if it were reused
    (out / "_work" / "plan.json").write_text(json.dumps({"version": 0}))
    capsys.readouterr()
    stats = prepare_dataset(DataArguments(**_args(corpus, out, augment_transpose=0, val_fraction=0.2,
                                                  test_fraction=0.2)))
    assert "starting over" in capsys.readouterr().out
    assert stats["items_kept"] == 6 and not (out / "_work").exists()


@pytest.mark.parametrize("num_proc", [1, 2])
def test_shard_size_does_not_change_the_dataset(tmp_path, pop909_files, num_proc):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in pop909_files:
        (corpus / p.name).write_bytes(p.read_bytes())
    base = _args(corpus, tmp_path / "a", augment_transpose=0, num_proc=num_proc)
    a = _content(Path(prepare_dataset(DataArguments(**{**base, "shard_size": 0}))["arguments"]["output"]))
    b = _content(Path(prepare_dataset(DataArguments(**{**base, "output": str(tmp_path / "b"), "shard_size": 3}))
                      ["arguments"]["output"]))
    for split in a["ids"]:
        np.testing.assert_array_equal(a["ids"][split], b["ids"][split])
    assert a["manifest"] == b["manifest"]


# Preparation in a child process whose packing workers block inside their first batch after
# leaving a marker file, so the test kills the run while it packs, whatever the machine's load.
BLOCKED_PACKING = """
import functools, json, os, sys, time
from pathlib import Path
import data.packing as packing
import data.pipeline as pipeline
from data.pipeline import DataArguments, prepare_dataset

markers = Path(sys.argv[2])

def blocked_pack_batch(*args, **kwargs):
    (markers / f"packing-{os.getpid()}").touch()
    time.sleep(3600)

packing._pack_batch = blocked_pack_batch
# batches of 2 pieces, so the few train pieces are packed by 2 map workers
pipeline.pack_dataset = functools.partial(packing.pack_dataset, batch_size=2)
prepare_dataset(DataArguments(**json.loads(sys.argv[1])))
"""


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_a_killed_preparation_leaves_no_process_behind(tmp_path):
    if not POP909.is_dir():
        pytest.fail(f"POP909 not found at {POP909} (the team's shared data folder)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in sorted(POP909.glob("*.mid"))[:20]:  # 20 items: 2 worker processes (one per 8 items, at most 2)
        (corpus / p.name).write_bytes(p.read_bytes())
    markers = tmp_path / "markers"
    markers.mkdir()
    args = _args(corpus, tmp_path / "out", num_proc=2, shard_size=0, augment_transpose=0)
    child = subprocess.Popen([sys.executable, "-c", BLOCKED_PACKING, json.dumps(args), str(markers)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    descendants = []
    try:
        deadline = time.time() + 600  # a condition, not a timing: the workers stay in the packing stage
        while not list(markers.iterdir()):
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.time() < deadline, "packing never started"
            time.sleep(0.05)
        descendants = psutil.Process(child.pid).children(recursive=True)
        assert len(descendants) >= 2  # the packing workers (and the queue manager of datasets)
        child.send_signal(signal.SIGKILL)
        child.wait()
        gone_by = time.time() + 60
        while _alive(descendants) and time.time() < gone_by:
            time.sleep(0.05)
        assert not _alive(descendants), [(p.pid, p.cmdline()) for p in _alive(descendants)]
    finally:
        for p in _alive(descendants):
            p.kill()
        if child.poll() is None:
            child.kill()
