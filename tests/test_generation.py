"""Generation: seeded sampling, decoding and re-loading, prompts, descriptors, figures, report."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
from symusic import Note, Score, TimeSignature, Track
from tests_helpers import load_script

from configs.sampling import SamplingArguments
from generation.pipeline import GenerationArguments, generate_to_folder, sample_study
from generation.quality import MUSIC_DESCRIPTORS_PATH, describe_and_compare
from generation.sampling import grammar_error_rate, load_model_and_tokenizer, prompt_ids, sample_ids

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def w32(tiny_runs):
    """The trained w32 run folder and its (model, tokenizer)."""
    return tiny_runs / "w32", load_model_and_tokenizer(tiny_runs / "w32", device="cpu")


def _tiny_piece(path: Path) -> Path:
    """Four notes at 4 ticks per quarter in 4/4 (hand-computed descriptors in the test below)."""
    score = Score(4)
    score.time_signatures.append(TimeSignature(0, 4, 4))
    track = Track(program=0, is_drum=False, name="piano")
    for time, duration, pitch in ((0, 4, 60), (0, 4, 64), (4, 4, 67), (16, 2, 72)):
        track.notes.append(Note(time, duration, pitch, 80))
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path


def test_descriptors_match_hand_computed_values(tmp_path):
    """C4+E4 (beat 1), G4 (beat 2), C5 (bar 2, beat 1, half a beat long); resolution 4 ticks/beat.

    - pitch-class entropy: classes C, E, G, C -> p = (1/2, 1/4, 1/4) -> 1.5 bits
    - pitch range: 72 - 60 = 12
    - polyphony: piano roll of 18 ticks; 4 ticks with 2 pitches, 4 + 2 with 1 -> 14 / 10 = 1.4
    - scale consistency: C, E, G all lie in C major -> 1.0
    - empty-beat rate: 18 // 4 + 1 = 5 beats; notes touch beats 0-1, 1-2 and 4 (MusPy counts
      the beat a note ends in) -> beat 3 empty -> 1/5
    - groove consistency: bars of 16 ticks; onsets at {0, 4} then {0} -> Hamming distance 1
      -> 1 - 1/16 = 0.9375
    """
    result = describe_and_compare([str(_tiny_piece(tmp_path / "tiny.mid"))])
    assert result["n_pieces"] == 1 and result["n_failed"] == 0
    expected = {"pitch_class_entropy": 1.5, "pitch_range": 12, "polyphony": 1.4, "scale_consistency": 1.0,
                "empty_beat_rate": 0.2, "groove_consistency": 0.9375}
    assert result["descriptors"] == pytest.approx(expected, abs=1e-12)


def test_unreadable_file_is_recorded_not_fatal(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    result = describe_and_compare([str(_tiny_piece(tmp_path / "ok.mid")), str(bad)])
    assert result["n_pieces"] == 1 and result["n_failed"] == 1 and str(bad) in result["failed"]
    assert result["descriptors"]["pitch_range"] == 12


def _metric_module():
    spec = importlib.util.spec_from_file_location("music_descriptors",
                                                  MUSIC_DESCRIPTORS_PATH / "music_descriptors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_distribution_distance():
    distance = _metric_module().distribution_distance
    values = [1.0, 2.0, 2.5, 3.0, 4.0]
    oa, kl = distance(values, values)
    assert oa == pytest.approx(1.0, abs=1e-4) and kl == pytest.approx(0.0, abs=1e-9)  # grid ends at 4 bandwidths
    oa_far, kl_far = distance([v + 100 for v in values], values)
    assert oa_far < 1e-6 and kl_far > 10
    oa_near, _ = distance([v + 0.5 for v in values], values)
    assert 0.2 < oa_near < 0.95  # partly overlapping
    assert all(math.isnan(x) for x in distance([], values))


def test_sampling_is_reproducible_and_files_reload(w32, tmp_path):
    run_dir, (model, tok) = w32
    args = dict(model=str(run_dir), num_samples=3, seed=11, dataset=None, num_reference=0)
    sampling = SamplingArguments(max_new_tokens=40, top_p=0.95)
    first = generate_to_folder(GenerationArguments(output_dir=str(tmp_path / "a"), **args), sampling, model=model,
                               tokenizer=tok)
    second = generate_to_folder(GenerationArguments(output_dir=str(tmp_path / "b"), **args), sampling, model=model,
                                tokenizer=tok)
    other = generate_to_folder(GenerationArguments(output_dir=str(tmp_path / "c"), **{**args, "seed": 12}), sampling,
                               model=model, tokenizer=tok)
    ids = [s["ids"] for s in first["samples"]]
    assert ids == [s["ids"] for s in second["samples"]]
    assert ids != [s["ids"] for s in other["samples"]]
    assert all(1 <= len(x) <= 40 for x in ids)
    on_disk = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert [s["ids"] for s in on_disk["samples"]] == ids and on_disk["settings"]["seed"] == 11
    assert (on_disk["settings"]["top_p"], on_disk["settings"]["max_new_tokens"]) == (0.95, 40)
    for sample in first["samples"]:
        assert sample["decoded"], sample["error"]
        midi = tmp_path / "a" / sample["path"]
        assert midi.read_bytes() == (tmp_path / "b" / sample["path"]).read_bytes()
        reloaded = Score(str(midi))
        assert reloaded.note_num() == sample["num_notes"]
        assert 0.0 <= sample["grammar_error_rate"] <= 1.0
        assert midi.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert first["quality"] is not None and first["quality"]["num_reference"] == 0
    assert (tmp_path / "a" / "quality.json").is_file()


def test_sampling_arguments_are_checked(w32):
    _, (model, tok) = w32
    context = model.config.n_positions
    with pytest.raises(ValueError, match=f"between 1 and {context - 1}"):
        sample_ids(model, tok, num_samples=1, seed=0, sampling=SamplingArguments(max_new_tokens=context))
    with pytest.raises(ValueError, match="temperature > 0"):
        SamplingArguments(temperature=0.0)
    config = SamplingArguments(top_k=20).generation_config(context=context, prompt_tokens=1, eos_token_id=2,
                                                           pad_token_id=0)
    assert (config.do_sample, config.top_k, config.top_p, config.max_new_tokens) == (True, 20, 1.0, context - 1)
    with pytest.raises(ValueError, match="--output-dir"):
        GenerationArguments(model="someone/some-model").resolved_output_dir()


def test_grammar_error_rate(w32, pop909_files):
    _, (_, tok) = w32
    bos = tok["BOS_None"]
    valid = prompt_ids(tok, pop909_files[0], 2)[1:]
    assert grammar_error_rate(tok, [bos], valid) == 0.0  # real music tokenizes into a well-formed sequence
    assert grammar_error_rate(tok, [bos], [*valid, bos]) == pytest.approx(1 / (len(valid) + 1))
    pitch = [tok["Pitch_60"]] * 4  # a Pitch must be followed by a Velocity: 3 broken successions
    assert grammar_error_rate(tok, [bos], pitch) == pytest.approx(3 / 4)


def test_prompt_keeps_its_bars_and_is_continued(w32, pop909_files, tmp_path):
    run_dir, (model, tok) = w32
    prompt = prompt_ids(tok, pop909_files[1], 2)
    assert prompt[0] == tok["BOS_None"]
    assert sum(1 for i in prompt if i == tok["Bar_None"]) == 2
    prompt_notes = tok.decode(prompt[1:]).note_num()
    assert prompt_notes > 0
    summary = generate_to_folder(
        GenerationArguments(model=str(run_dir), output_dir=str(tmp_path), num_samples=2, seed=0,
                            prompt=str(pop909_files[1]), prompt_bars=2, num_reference=0),
        model=model, tokenizer=tok)
    assert summary["prompt_tokens"] == len(prompt) - 1
    assert summary["max_new_tokens"] == model.config.n_positions - len(prompt)
    for sample in summary["samples"]:
        assert sample["num_notes"] >= prompt_notes  # the file holds the prompt, then the continuation
    with pytest.raises(ValueError, match="Cannot use"):
        prompt_ids(tok, tmp_path / "samples.json", 2)


def test_study_samples_and_report(tiny_runs, tiny_setup, tmp_path):
    root, _, _ = tiny_setup
    study = tmp_path / "runs"
    shutil.copytree(tiny_runs, study)
    status = sample_study(study, ["w16", "w48", "missing"], count=2, seed=0, dataset=str(root / "data"),
                          sampling=SamplingArguments(max_new_tokens=48), log=lambda line: None)
    assert status == {"w16": "sampled", "w48": "sampled", "missing": "no run"}
    quality = json.loads((study / "w48" / "samples" / "quality.json").read_text())
    assert quality["num_reference"] >= 1 and quality["reference_max_tokens"] == 48
    assert len(list((study / "w48" / "samples" / "reference").glob("test_*.mid"))) == quality["num_reference"]
    again = sample_study(study, ["w16"], count=2, seed=0, dataset=str(root / "data"),
                         sampling=SamplingArguments(max_new_tokens=48), log=lambda line: None)
    assert again == {"w16": "existing"}

    out = tmp_path / "analysis"
    assert load_script("analyze").main(["--runs", str(study), "--output", str(out), "--n-bootstrap", "0"]) == 0
    report = (out / "report.md").read_text()
    assert "## Samples" in report and "![One sample per size](samples_pianoroll.png)" in report
    assert (out / "samples_pianoroll.png").read_bytes()[:8] == PNG_MAGIC
    rows = json.loads((out / "sample_quality.json").read_text())
    assert [r["run_name"] for r in rows] == ["w16", "w48"]  # sorted by N; w32 has no samples
    assert all(r["num_samples"] == 2 for r in rows)


def test_min_new_tokens_forbids_early_eos(w32):
    _, (model, tok) = w32
    free = sample_ids(model, tok, num_samples=6, seed=5, sampling=SamplingArguments(max_new_tokens=30))
    forced = sample_ids(model, tok, num_samples=6, seed=5,
                        sampling=SamplingArguments(max_new_tokens=30, min_new_tokens=30))
    assert all(len(x) == 30 and tok["EOS_None"] not in x for x in forced)
    assert len(free) == 6
    with pytest.raises(ValueError, match="--min-new-tokens"):
        sample_ids(model, tok, num_samples=1, seed=0, sampling=SamplingArguments(max_new_tokens=10, min_new_tokens=11))


def test_descriptor_undefined_for_all_samples_counts_as_no_overlap(tmp_path):
    one_note = Score(4)
    track = Track(program=0, is_drum=False)
    track.notes.append(Note(0, 4, 60, 80))
    one_note.tracks.append(track)
    one_note.dump_midi(str(tmp_path / "one.mid"))  # shorter than two bars: groove consistency undefined
    result = describe_and_compare([str(tmp_path / "one.mid")], [str(_tiny_piece(tmp_path / "ref.mid"))])
    assert result["descriptors"]["groove_consistency"] is None
    assert result["overlapping_area"]["groove_consistency"] == 0.0
    assert result["kl_divergence"]["groove_consistency"] is None
    assert result["mean_overlapping_area"] == pytest.approx(sum(result["overlapping_area"].values()) / 6)
