"""Shared fixtures: real MIDI from ../shared/data, small corrupt files, a tiny dataset, tiny runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests_helpers import POP909, load_script

# Training logs to W&B by default (offline without credentials); tests opt in where they
# check it (tests/test_tracking.py), so the others stay fast and leave no wandb folders.
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def pop909_files() -> list[Path]:
    """The first eight POP909 songs. A checkout without ../shared/data/pop909 fails these tests
    with the reason: the suite must not pass by skipping what it cannot run."""
    if not POP909.is_dir():
        pytest.fail(f"POP909 not found at {POP909}: the tests read real MIDI from the team's shared data folder "
                    "(../shared/data beside the checkout; see its README).", pytrace=False)
    return sorted(POP909.glob("*.mid"))[:8]


@pytest.fixture(scope="session")
def make_corpus():
    """Factory of a small messy corpus (see _make_corpus)."""
    return _make_corpus


def _make_corpus(folder: Path, pop909_files: list[Path]) -> dict[str, str]:
    """A small messy corpus: 8 real songs, a duplicate, a cut-short file, a malformed one, an empty MIDI, ABC.

    Returns:
        source_id -> expected reason ("" for kept pieces).
    """
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for p in pop909_files:
        shutil.copy(p, folder / p.name)
        expected[p.name] = ""
    sub = folder / "nested" / "deeper"
    sub.mkdir(parents=True)
    shutil.copy(pop909_files[0], sub / "same_song_other_name.MID")
    expected["nested/deeper/same_song_other_name.MID"] = "duplicate"
    (folder / "cut_short.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x00\x10\x00\x90")
    expected["cut_short.mid"] = "truncated"  # the track declares 16 bytes, the file ends after 2
    (folder / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0"
                                         b"MTrk\x00\x00\x00\x08\x00\xf4\x3c\x40\x00\xff\x2f\x00")
    expected["corrupt.mid"] = "corrupt"  # complete, but 0xF4 is no MIDI status byte
    (folder / "text.midi").write_bytes(b"this is not a midi file")
    expected["text.midi"] = "not_midi"
    # A valid MIDI file with one empty track: header + MTrk holding only end-of-track.
    (folder / "empty.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0"
                                       b"MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
    expected["empty.mid"] = "no_notes"
    (folder / "tunes.abc").write_text(
        "%abc-2.1\n\nX:1\nT:Scale\nM:4/4\nL:1/8\nK:C\nCDEF GABc|cBAG FEDC|CDEF GABc|c8|]\n\n"
        "X:2\nT:Other\nM:3/4\nL:1/4\nK:G\nGAB|cde|dcB|A3|GAB|c2B|A2G|G3|]\n")
    expected["tunes.abc#X:1"] = ""
    expected["tunes.abc#X:2"] = ""
    return expected


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory, pop909_files):
    """A tiny prepared dataset, study file and three size files: ``(root, study, {name: path})``."""
    from data.pipeline import DataArguments, prepare_dataset

    root = tmp_path_factory.mktemp("train")
    corpus = root / "corpus"
    corpus.mkdir()
    for p in pop909_files:
        (corpus / p.name).write_bytes(p.read_bytes())
    prepare_dataset(DataArguments(source=str(corpus), output=str(root / "data"), block_size=64, num_proc=1,
                                  val_fraction=0.2, test_fraction=0.2, seed=3))
    study = root / "study.yaml"
    study.write_text("global_batch_tokens: 512\nmax_device_batch_size: 4\nmax_tokens: 15360\n"
                     "learning_rate: 3.0e-3\nwarmup_steps: 0.1\nlr_scheduler_type: cosine_with_min_lr\n"
                     "lr_scheduler_kwargs: {min_lr_rate: 0.1}\nweight_decay: 0.1\nmax_grad_norm: 1.0\n"
                     "eval_steps: 10\neval_max_blocks: 16\nlogging_steps: 2\nseed: 7\nreport_to: none\n"
                     "save_strategy: 'no'\noptim: adamw_torch\ndisable_tqdm: true\n")
    sizes = {}
    for name, width in (("w16", 16), ("w32", 32), ("w48", 48)):
        sizes[name] = root / f"{name}.yaml"
        sizes[name].write_text(f"n_layer: 2\nn_embd: {width}\nn_head: 2\n")
    return root, study, sizes


@pytest.fixture(scope="session")
def other_datasets(tiny_setup):
    """Two datasets that differ from tiny_setup's: ``{"corpus": other songs at block 64,
    "block_size": the same songs at block 32}`` (the same tokenizer, so the same vocabulary)."""
    from data.pipeline import DataArguments, prepare_dataset

    root = tiny_setup[0]
    other = root / "other-corpus"
    other.mkdir(exist_ok=True)
    for p in sorted(POP909.glob("*.mid"))[8:14]:
        (other / p.name).write_bytes(p.read_bytes())
    out = {"corpus": root / "other-data-64", "block_size": root / "data-32"}
    for source, key, block in ((other, "corpus", 64), (root / "corpus", "block_size", 32)):
        prepare_dataset(DataArguments(source=str(source), output=str(out[key]), block_size=block, num_proc=1,
                                      val_fraction=0.2, test_fraction=0.2, seed=3))
    return out


@pytest.fixture(scope="session")
def tiny_runs(tiny_setup):
    """Three real tiny training runs (w16, w32, w48, 30 steps each) under ``<root>/runs``."""
    root, study, sizes = tiny_setup
    train = load_script("train")
    for name, path in sizes.items():
        assert train.main(["--size", str(path), "--dataset", str(root / "data"), "--study", str(study),
                           "--output_dir", str(root / "runs" / name)]) == 0
    return root / "runs"
