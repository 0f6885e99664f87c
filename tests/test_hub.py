"""Hub sharing without network: cards, the files each push selects, and HfApi calls through a stand-in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import miditok
import pytest
import yaml
from datasets import DatasetDict
from huggingface_hub.utils import filter_repo_objects
from tests_helpers import load_script
from transformers import AutoModelForCausalLM

from sharing.cards import dataset_card, model_card
from sharing.push import (
    dataset_upload,
    model_upload,
    push_dataset,
    push_model,
    repo_id_for_size,
)
from tokenizer import load_tokenizer

MODEL_FILES = {"README.md", "model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
               "run_summary.json", "trainer_state.json"}
DATASET_FILES = {"README.md", "tokenizer.json", "stats.json", "manifest.jsonl"}
FIT = {"fitted": True, "formula": "L(N) = a * N**(-alpha) + c", "a": 41.7, "alpha": 0.3125, "c": 1.2345,
       "a_ci": [30.0, 50.0], "alpha_ci": [0.2718, 0.3501], "c_ci": [1.1, 1.3], "n_points": 5,
       "confidence": 0.95, "metric": "eval_loss", "n_convention": "non_embedding", "runs_used": ["w16"]}


@pytest.fixture(scope="module")
def hub_run(tiny_setup, tiny_runs):
    """The finished w16 run of the shared tiny runs and its dataset."""
    root, _, _ = tiny_setup
    run_dir = tiny_runs / "w16"
    return SimpleNamespace(data=root / "data", run=run_dir,
                           summary=json.loads((run_dir / "run_summary.json").read_text()),
                           stats=json.loads((root / "data" / "stats.json").read_text()))


def selected_files(folder: Path, allow_patterns=None, ignore_patterns=None) -> set[str]:
    """The files of ``folder`` that ``HfApi.upload_folder`` uploads: every file under it, as a
    path relative to it, filtered by huggingface_hub's own pattern matcher."""
    files = [p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file()]
    return set(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))


class FakeHfApi:
    """Stand-in for huggingface_hub.HfApi: records calls and what each upload would send."""

    instances: list[FakeHfApi] = []

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, str] = {}
        FakeHfApi.instances.append(self)

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))
        return SimpleNamespace(repo_id=args[0])

    def create_branch(self, *args, **kwargs):
        self.calls.append(("create_branch", args, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", (), kwargs))
        folder = Path(kwargs["folder_path"])
        for name in selected_files(folder, kwargs.get("allow_patterns"), kwargs.get("ignore_patterns")):
            self.uploaded[name] = (folder / name).read_text() if name.endswith((".md", ".json")) else ""
        return SimpleNamespace(commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/{len(self.calls)}")

    def upload_file(self, **kwargs):
        self.calls.append(("upload_file", (), kwargs))
        self.uploaded[kwargs["path_in_repo"]] = kwargs["path_or_fileobj"].decode()
        return SimpleNamespace(commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/{len(self.calls)}")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_upload_selects_exactly_the_pushed_files_and_they_load(hub_run, tmp_path):
    upload = model_upload(hub_run.run, FIT, repo_id="me/midi-gpt2-w16")
    assert upload.folder == hub_run.run
    selected = selected_files(upload.folder, allow_patterns=list(upload.files))
    assert (hub_run.run / "training_args.bin").is_file()  # there, but a pickle: it stays home
    assert selected | {"README.md"} == MODEL_FILES
    staged = tmp_path / "staged"  # a folder holding only what is pushed is a complete model
    staged.mkdir()
    for name in selected:
        shutil.copy2(hub_run.run / name, staged / name)
    model = AutoModelForCausalLM.from_pretrained(staged)
    assert model.num_parameters() == hub_run.summary["n_params"]
    assert model.num_parameters(exclude_embeddings=True) == hub_run.summary["n_params_non_embedding"]
    assert len(load_tokenizer(staged)) == hub_run.summary["vocab_size"] == model.config.vocab_size
    assert len(miditok.REMI.from_pretrained(staged)) == hub_run.summary["vocab_size"]  # the card's call, local
    card = str(upload.card)
    assert 'repo = "me/midi-gpt2-w16"' in card and "L(N) = a·N^-α + c" in card
    assert upload.commit_message == (f"Upload size w16 (N={hub_run.summary['n_params_non_embedding']:,}, "
                                     f"D={hub_run.summary['tokens_trained']:,})")


def test_model_card_states_the_run_and_shows_the_law_only_when_fitted(hub_run):
    s = hub_run.summary
    card = str(model_card(s))
    meta = front_matter(card)
    assert meta == model_card(s).data.to_dict()  # the front matter is the ModelCardData
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "mit" and {"music", "midi", "symbolic-music", "scaling-laws", "gpt2"} <= set(meta["tags"])
    assert front_matter(str(model_card(s, license="cc-by-4.0")))["license"] == "cc-by-4.0"
    for text in ("size `w16`", f"{s['n_params_non_embedding']:,}", f"{s['n_params']:,}",
                 f"{s['tokens_trained']:,}", f"{s['eval_loss']:.4f}", f"{s['test_loss']:.4f}",
                 "2 / 16 / 2", f"{s['global_batch_tokens']:,} tokens per step", "cosine", "adamw_torch",
                 "AutoModelForCausalLM.from_pretrained(repo)", "REMI.from_pretrained(repo)", "dump_midi",
                 f"run `{s['run_name']}`", f"{s['learning_rate']:g} (fixed)", f"seed | {s['seed']}"):
        assert text in card, text
    # the usage code samples the whole context, never past it
    assert f"max_new_tokens={s['block_size'] - 1}," in card and "same tokens in the same order" not in card
    train = hub_run.stats["splits"]["train"]
    assert f"| train | {train['pieces']:,} | {train['tokens']:,} | {train['blocks']:,} |" in card
    assert "L(N)" not in card and "α" not in card
    assert "L(N)" not in str(model_card(s, {"fitted": False, "reason": "2 runs"}))
    fitted = str(model_card(s, FIT))
    assert "L(N) = a·N^-α + c" in fitted and "α = 0.3125" in fitted and "[0.2718, 0.3501]" in fitted
    assert "c = 1.2345 nats/token" in fitted and "This model is one of them" in fitted  # w16 is in runs_used
    assert "This model is one of them" not in str(model_card(s, {**FIT, "runs_used": ["w32", "w48"]}))


def test_missing_run_or_dataset_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)model\.safetensors.*scripts/train\.py"):
        model_upload(tmp_path)
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        dataset_upload(tmp_path)


def test_dataset_card_and_extras_carry_the_split_figures(hub_run):
    upload = dataset_upload(hub_run.data, repo_id="me/pop909-remi")
    assert upload.folder == hub_run.data
    assert selected_files(upload.folder, allow_patterns=list(upload.files)) | {"README.md"} == DATASET_FILES
    card = str(upload.card)
    assert front_matter(card) == upload.card.data.to_dict()  # the front matter is the DatasetCardData
    assert front_matter(card)["task_categories"] == ["text-generation"]
    for split, d in hub_run.stats["splits"].items():
        assert f"| {split} | {d['pieces']:,} | {d['tokens']:,} | {d['blocks']:,} | {d['dropped_tokens']:,} |" in card
    assert "load_dataset(repo)" in card and 'repo = "me/pop909-remi"' in card and "REMI(params=" in card
    assert "None: every item was kept" in card
    skipped = str(dataset_card({**hub_run.stats, "skipped_by_reason": {"duplicate": 2, "truncated": 1}}))
    assert "| `duplicate` | 2 | same musical content" in skipped and "| `truncated` | 1 |" in skipped


def test_push_model_calls_hfapi_with_the_right_arguments(hub_run):
    api = FakeHfApi()
    before = sorted(hub_run.run.iterdir())
    url = push_model(hub_run.run, "me/midi-gpt2-w16", fit=FIT, private=True, revision="v1", api=api)
    assert url == "https://hub.test/me/midi-gpt2-w16/commit/4"  # the last commit: the card
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder", "upload_file"]
    assert api.calls[0][1:] == (("me/midi-gpt2-w16",), {"exist_ok": True, "private": True})
    assert api.calls[1][1:] == (("me/midi-gpt2-w16",), {"branch": "v1", "exist_ok": True})
    files, card = api.calls[2][2], api.calls[3][2]
    assert files["repo_id"] == card["repo_id"] == "me/midi-gpt2-w16" and files["revision"] == card["revision"] == "v1"
    assert files["folder_path"] == str(hub_run.run)  # uploaded from the run folder, nothing copied
    assert card["path_in_repo"] == "README.md"
    assert set(api.uploaded) == MODEL_FILES and "α = 0.3125" in api.uploaded["README.md"]
    assert sorted(hub_run.run.iterdir()) == before  # the run folder is untouched
    with pytest.raises(ValueError):  # a malformed repo id fails before any call
        push_model(hub_run.run, "me/two/slashes", api=(bad := FakeHfApi()))
    assert not bad.calls


def test_push_dataset_uploads_extras_then_the_splits(hub_run, monkeypatch):
    pushed = []

    def fake_push_to_hub(self, repo_id, **kwargs):
        pushed.append((sorted(self), repo_id, kwargs, len(api.calls)))
        return SimpleNamespace(commit_url=f"https://hub.test/datasets/{repo_id}/commit/def")

    monkeypatch.setattr(DatasetDict, "push_to_hub", fake_push_to_hub)
    api = FakeHfApi()
    url = push_dataset(hub_run.data, "me/pop909-remi", private=True, token="hf_x", api=api)
    assert url == "https://hub.test/datasets/me/pop909-remi/commit/def"
    assert api.calls[0][1:] == (("me/pop909-remi",), {"repo_type": "dataset", "exist_ok": True, "private": True})
    assert [c[0] for c in api.calls[1:]] == ["upload_folder", "upload_file"]
    assert all(c[2]["repo_type"] == "dataset" for c in api.calls[1:])
    assert api.calls[1][2]["folder_path"] == str(hub_run.data)
    assert set(api.uploaded) == DATASET_FILES and "load_dataset(repo)" in api.uploaded["README.md"]
    splits, repo_id, kwargs, calls_before = pushed[0]
    assert splits == ["test", "train", "validation"] and repo_id == "me/pop909-remi"
    assert kwargs["private"] is True and kwargs["token"] == "hf_x"
    assert calls_before == 3  # the card is up first, so push_to_hub merges its metadata into it


def test_cli_stages_offline_and_pushes_through_hfapi(hub_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    cli = load_script("push_to_hub")
    fit_file = tmp_path / "analysis" / "fit.json"
    fit_file.parent.mkdir()
    fit_file.write_text(json.dumps(FIT))
    stage = ["--run", str(hub_run.run), "--stage-only", str(tmp_path / "m")]
    assert cli.main([*stage, "--fit", str(fit_file.parent)]) == 0
    assert {f.name for f in (tmp_path / "m").iterdir()} == MODEL_FILES
    assert "α = 0.3125" in (tmp_path / "m" / "README.md").read_text()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").num_parameters() == hub_run.summary["n_params"]
    assert cli.main(["--dataset", str(hub_run.data), "--stage-only", str(tmp_path / "d")]) == 0
    assert {f.name for f in (tmp_path / "d").iterdir()} == DATASET_FILES
    assert "nothing pushed" in capsys.readouterr().out

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)  # api=None makes one from here
    FakeHfApi.instances.clear()
    assert cli.main(["--run", str(hub_run.run), "--repo-id", "me/midi-gpt2-w16", "--private"]) == 0
    (api,) = FakeHfApi.instances
    assert api.calls[0][2]["private"] is True and set(api.uploaded) == MODEL_FILES
    assert "commit: https://hub.test/me/midi-gpt2-w16/commit/3" in capsys.readouterr().out  # the card's

    with pytest.raises(SystemExit) as exc:
        cli.main(["--run", str(hub_run.run)])
    assert exc.value.code == 2 and "--repo-id" in capsys.readouterr().err
    from configs.cli import run_main
    assert run_main(cli.main, ["--run", str(tmp_path / "none"), "--stage-only", str(tmp_path / "x")]) == 2
    assert "scripts/train.py" in capsys.readouterr().err
    assert run_main(cli.main, ["--run", str(hub_run.run), "--stage-only", str(tmp_path / "y"),
                               "--fit", str(tmp_path / "nofit.json")]) == 2
    assert "scripts/analyze.py" in capsys.readouterr().err
    assert run_main(cli.main, stage) == 2  # everything in the folder would be pushed: refused
    assert "is not empty" in capsys.readouterr().err


def test_repo_id_for_size_uses_the_size_name():
    assert repo_id_for_size("me/midi-gpt2", "small") == "me/midi-gpt2-small"
    assert repo_id_for_size("me/midi-gpt2", "configs/sizes/demo3.yaml") == "me/midi-gpt2-demo3"


def test_sharing_does_not_import_training():
    imported = subprocess.run([sys.executable, "-c", "import sys, sharing.cards, sharing.push; "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] == 'training'))"],
                              capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
