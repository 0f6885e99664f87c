"""Hub sharing without network: cards, staged folders, and HfApi calls through a stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import miditok
import pytest
import yaml
from datasets import DatasetDict
from tests_helpers import load_script
from transformers import AutoModelForCausalLM

from sharing.cards import dataset_card, model_card
from tokenizer import load_tokenizer
from training.hub import (
    push_dataset,
    push_model,
    repo_id_for_size,
    stage_dataset_extras,
    stage_model_folder,
)

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


class FakeHfApi:
    """Stand-in for huggingface_hub.HfApi: records calls and what each upload folder held."""

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
        folder = Path(kwargs["folder_path"])  # a temporary folder, gone after the push returns
        self.uploaded = {f.name: f.read_text() if f.suffix in (".md", ".json") else "" for f in folder.iterdir()}
        return SimpleNamespace(commit_url=f"https://hub.test/{kwargs['repo_id']}/commit/abc")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_staged_model_folder_holds_exactly_the_pushed_files_and_loads(hub_run, tmp_path):
    staged = stage_model_folder(hub_run.run, tmp_path / "staged", FIT, repo_id="me/midi-gpt2-w16")
    assert {f.name for f in staged.iterdir()} == MODEL_FILES  # training_args.bin (a pickle) stays home
    model = AutoModelForCausalLM.from_pretrained(staged)
    assert model.num_parameters() == hub_run.summary["n_params"]
    assert model.num_parameters(exclude_embeddings=True) == hub_run.summary["n_params_non_embedding"]
    assert len(load_tokenizer(staged)) == hub_run.summary["vocab_size"] == model.config.vocab_size
    assert len(miditok.REMI.from_pretrained(staged)) == hub_run.summary["vocab_size"]  # the card's call, local
    card = (staged / "README.md").read_text()
    assert 'repo = "me/midi-gpt2-w16"' in card and "L(N) = a·N^-α + c" in card
    with pytest.raises(ValueError, match="not empty"):
        stage_model_folder(hub_run.run, staged)


def test_model_card_states_the_run_and_shows_the_law_only_when_fitted(hub_run):
    s = hub_run.summary
    card = str(model_card(s))
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "mit" and {"music", "midi", "symbolic-music", "scaling-laws", "gpt2"} <= set(meta["tags"])
    assert front_matter(str(model_card(s, license="cc-by-4.0")))["license"] == "cc-by-4.0"
    for text in ("size `w16`", f"{s['n_params_non_embedding']:,}", f"{s['n_params']:,}",
                 f"{s['tokens_trained']:,}", f"{s['eval_loss']:.4f}", f"{s['test_loss']:.4f}",
                 "2 / 16 / 2", f"{s['global_batch_tokens']:,} tokens per step", "cosine", "adamw_torch",
                 "AutoModelForCausalLM.from_pretrained(repo)", "REMI.from_pretrained(repo)", "dump_midi"):
        assert text in card, text
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
        stage_model_folder(tmp_path, tmp_path / "staged")
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        stage_dataset_extras(tmp_path, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_dataset_card_and_staged_extras_carry_the_split_figures(hub_run, tmp_path):
    staged = stage_dataset_extras(hub_run.data, tmp_path / "extras", repo_id="me/pop909-remi")
    assert {f.name for f in staged.iterdir()} == DATASET_FILES
    card = (staged / "README.md").read_text()
    assert front_matter(card)["task_categories"] == ["text-generation"]
    for split, d in hub_run.stats["splits"].items():
        assert f"| {split} | {d['pieces']:,} | {d['tokens']:,} | {d['blocks']:,} | {d['dropped_tokens']:,} |" in card
    assert "load_dataset(repo)" in card and 'repo = "me/pop909-remi"' in card and "REMI(params=" in card
    assert "None: every item was kept" in card
    skipped = str(dataset_card({**hub_run.stats, "skipped_by_reason": {"duplicate": 2, "truncated": 1}}))
    assert "| `duplicate` | 2 | same musical content" in skipped and "| `truncated` | 1 |" in skipped


def test_push_model_calls_hfapi_with_the_right_arguments(hub_run):
    api = FakeHfApi()
    url = push_model(hub_run.run, "me/midi-gpt2-w16", fit=FIT, private=True, revision="v1", api=api)
    assert url == "https://hub.test/me/midi-gpt2-w16/commit/abc"
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1:] == (("me/midi-gpt2-w16",), {"exist_ok": True, "private": True})
    assert api.calls[1][1:] == (("me/midi-gpt2-w16",), {"branch": "v1", "exist_ok": True})
    upload = api.calls[2][2]
    assert upload["repo_id"] == "me/midi-gpt2-w16" and upload["revision"] == "v1"
    assert not Path(upload["folder_path"]).exists()  # the staging folder is temporary
    assert set(api.uploaded) == MODEL_FILES and "α = 0.3125" in api.uploaded["README.md"]
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
    assert api.calls[1][0] == "upload_folder" and api.calls[1][2]["repo_type"] == "dataset"
    assert set(api.uploaded) == DATASET_FILES
    splits, repo_id, kwargs, calls_before = pushed[0]
    assert splits == ["test", "train", "validation"] and repo_id == "me/pop909-remi"
    assert kwargs["private"] is True and kwargs["token"] == "hf_x"
    assert calls_before == 2  # the card is up first, so push_to_hub merges its metadata into it


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
    assert cli.main(["--dataset", str(hub_run.data), "--stage-only", str(tmp_path / "d")]) == 0
    assert {f.name for f in (tmp_path / "d").iterdir()} == DATASET_FILES
    assert "nothing pushed" in capsys.readouterr().out

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)  # api=None makes one from here
    FakeHfApi.instances.clear()
    assert cli.main(["--run", str(hub_run.run), "--repo-id", "me/midi-gpt2-w16", "--private"]) == 0
    (api,) = FakeHfApi.instances
    assert api.calls[0][2]["private"] is True and set(api.uploaded) == MODEL_FILES
    assert "commit: https://hub.test/me/midi-gpt2-w16/commit/abc" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exc:
        cli.main(["--run", str(hub_run.run)])
    assert exc.value.code == 2 and "--repo-id" in capsys.readouterr().err
    from configs.cli import run_main
    assert run_main(cli.main, ["--run", str(tmp_path / "none"), "--stage-only", str(tmp_path / "x")]) == 2
    assert "scripts/train.py" in capsys.readouterr().err
    assert run_main(cli.main, ["--run", str(hub_run.run), "--stage-only", str(tmp_path / "y"),
                               "--fit", str(tmp_path / "nofit.json")]) == 2
    assert "scripts/analyze.py" in capsys.readouterr().err


def test_repo_id_for_size_uses_the_size_name():
    assert repo_id_for_size("me/midi-gpt2", "small") == "me/midi-gpt2-small"
    assert repo_id_for_size("me/midi-gpt2", "configs/sizes/demo3.yaml") == "me/midi-gpt2-demo3"
