from __future__ import annotations

import pytest
from tests_helpers import load_script
from transformers import GPT2LMHeadModel

from configs import CONFIG_DIR
from configs.models import (
    DEMO_SIZES,
    STUDY_SIZES,
    available_sizes,
    build_model_config,
    count_parameters,
    load_size,
)
from configs.study import (
    DEFAULT_STUDY,
    DEMO_STUDY,
    StudyArguments,
    TrainingArguments,
    load_study_defaults,
    parse_with_study,
)
from training.batch import compute_batch_layout
from training.run import RunArguments

VOCAB, BLOCK = 518, 256


@pytest.mark.parametrize("size", STUDY_SIZES + DEMO_SIZES)
def test_every_size_builds(size):
    config = build_model_config(size, VOCAB, BLOCK, 1, 2, 0)
    assert config.n_embd % config.n_head == 0
    assert config.vocab_size == VOCAB and config.n_positions == BLOCK and config.bos_token_id == 1
    assert config.resid_pdrop == 0.0


@pytest.mark.parametrize("ladder", [STUDY_SIZES, DEMO_SIZES])
def test_n_strictly_increases(ladder):
    ns = [count_parameters(build_model_config(s, VOCAB, BLOCK, 1, 2, 0))["n_params_non_embedding"] for s in ladder]
    assert ns == sorted(ns) and len(set(ns)) == len(ns)


def test_study_sizes_near_the_design_table():
    ns = {s: count_parameters(build_model_config(s, VOCAB, 1024, 1, 2, 0))["n_params_non_embedding"]
          for s in STUDY_SIZES}
    assert 0.3e6 < ns["tiny"] < 1e6 and 3e6 < ns["small"] < 6e6 and 15e6 < ns["medium"] < 25e6
    assert 45e6 < ns["large"] < 65e6 and ns["xl"] > 100e6


@pytest.mark.parametrize("size", ["tiny", *DEMO_SIZES])
def test_closed_form_counts_match_the_model(size):
    config = build_model_config(size, VOCAB, BLOCK, 1, 2, 0)
    counts = count_parameters(config)
    model = GPT2LMHeadModel(config)
    assert counts["n_params"] == model.num_parameters()
    assert counts["n_params_non_embedding"] == model.num_parameters(exclude_embeddings=True)
    d, n_layer = config.n_embd, config.n_layer
    assert counts["n_params_non_embedding"] == n_layer * (12 * d**2 + 13 * d) + 2 * d  # Kaplan et al. 2020


def test_size_files_are_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_layers: 4\nn_layer: 2\nn_embd: 64\nn_head: 2\n")
    with pytest.raises(ValueError, match="n_layers"):
        load_size(str(bad))
    bad.write_text("n_layer: 2\nn_embd: 100\nn_head: 3\n")
    with pytest.raises(ValueError, match="divisible"):
        load_size(str(bad))
    with pytest.raises(ValueError, match="choose one of"):
        load_size("gigantic")
    assert set(STUDY_SIZES + DEMO_SIZES) <= set(available_sizes())


@pytest.mark.parametrize("tokens,block,world,cap,expected", [
    (524288, 1024, 1, 16, (16, 32)),
    (524288, 1024, 8, 16, (16, 4)),
    (524288, 1024, 64, 16, (8, 1)),
    (8192, 256, 1, 32, (32, 1)),
    (8192, 256, 2, 32, (16, 1)),
    (6144, 256, 1, 5, (4, 6)),   # 24 sequences: largest divisor <= 5 is 4
])
def test_batch_layout_gives_the_requested_global_batch(tokens, block, world, cap, expected):
    layout = compute_batch_layout(tokens, block, world, cap)
    assert (layout.per_device_batch_size, layout.gradient_accumulation_steps) == expected
    assert layout.tokens_per_step == tokens
    assert layout.per_device_batch_size <= cap


def test_batch_layout_errors_say_what_to_change():
    with pytest.raises(ValueError, match="multiple of block_size"):
        compute_batch_layout(1000, 256, 1, 8)
    with pytest.raises(ValueError, match="split evenly over 3"):
        compute_batch_layout(1024, 256, 3, 8)


@pytest.mark.parametrize("path", [DEFAULT_STUDY, DEMO_STUDY])
def test_study_files_parse_with_precedence(path, tmp_path):
    run, study, targs = parse_with_study(
        (RunArguments, StudyArguments, TrainingArguments),
        ["--size", "tiny", "--dataset", "d", "--study", str(path), "--output_dir", str(tmp_path),
         "--learning_rate", "1e-3"])
    values = load_study_defaults(path, (StudyArguments, TrainingArguments))
    assert study.global_batch_tokens == values["global_batch_tokens"]
    assert targs.learning_rate == 1e-3  # flag beats YAML
    assert targs.max_grad_norm == 1.0 and targs.weight_decay == 0.1
    assert targs.lr_scheduler_type == "cosine_with_min_lr"
    assert study.sizes == values["sizes"]


def test_full_study_defaults():
    values = load_study_defaults(DEFAULT_STUDY, (StudyArguments, TrainingArguments))
    assert values["global_batch_tokens"] == 524288 and values["learning_rate"] == 3.0e-3
    assert values["sizes"] == list(STUDY_SIZES)
    # the cheap sizes are swept and repeated; large and xl take the rule (README gives the cost)
    assert values["lr_sweep_sizes"] == ["tiny", "small", "medium"] and len(values["lr_sweep_factors"]) == 5
    assert values["repeat_seeds"] == [1235, 1236] and values["repeat_sizes"] == ["tiny", "small"]
    study = StudyArguments(**{k: v for k, v in values.items() if k in StudyArguments.__dataclass_fields__})
    assert study.lr_sweep_extend == 2


def test_study_typos_and_hand_set_batches_are_refused(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_study_defaults(bad, (StudyArguments, TrainingArguments))
    bad.write_text("gradient_accumulation_steps: 4\n")
    with pytest.raises(ValueError, match="derived"):
        load_study_defaults(bad, (StudyArguments, TrainingArguments))
    with pytest.raises(ValueError, match="derived"):
        parse_with_study((RunArguments, StudyArguments, TrainingArguments),
                         ["--size", "tiny", "--dataset", "d", "--per_device_train_batch_size", "8"])
    assert (CONFIG_DIR / "sizes" / "tiny.yaml").is_file()


def test_size_table_command_prints_every_size(capsys, tiny_setup):
    from tests_helpers import load_script

    from tokenizer import load_tokenizer

    data = tiny_setup[0] / "data"  # a real prepared dataset: block_size 64
    vocab = len(load_tokenizer(data))
    module = load_script("model_sizes")
    assert module.main(["--dataset", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"vocab_size={vocab}, block_size=64" in out
    tiny = build_model_config("tiny", vocab, 64, 1, 2, 0)
    assert f"| tiny | 2 | 128 | 2 | 512 | 396,800 | {396_800 + (vocab + 64) * 128:,} |" in out
    assert all(f"| {s} |" in out for s in STUDY_SIZES + DEMO_SIZES)
    assert tiny.n_positions == 64
    assert module.main(["--vocab-size", "600", "--block-size", "128"]) == 0
    assert f"| tiny | 2 | 128 | 2 | 512 | 396,800 | {396_800 + (600 + 128) * 128:,} |" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "kind", "processes", "machines"), [
    ("single_gpu", "NO", 1, 1), ("multi_gpu", "MULTI_GPU", 8, 1), ("fsdp", "FSDP", 8, 1),
    ("two_nodes", "MULTI_GPU", 16, 2)])
def test_accelerate_configs_load_with_accelerate(name, kind, processes, machines):
    from accelerate.commands.config.config_args import load_config_from_file
    from transformers.models.gpt2 import modeling_gpt2

    config = load_config_from_file(str(CONFIG_DIR / "accelerate" / f"{name}.yaml"))
    assert (config.distributed_type.value, config.num_processes, config.num_machines) == (kind, processes, machines)
    assert config.mixed_precision == "bf16"
    if kind == "FSDP":  # the wrapped class must exist, or FSDP would wrap nothing
        assert hasattr(modeling_gpt2, config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"])


@pytest.mark.parametrize(("values", "match"), [
    ({"lr_sweep_factors": [1.0, 2.0]}, "3 or more rates"),
    ({"lr_sweep_factors": [0.5, 0.0, 2.0]}, "must be > 0"),
    ({"lr_sweep_sizes": ["tiny"]}, "lr_sweep_factors is empty"),
    ({"lr_sweep_factors": [0.5, 1.0, 2.0], "lr_sweep_extend": -1}, "lr_sweep_extend >= 0"),
])
def test_sweep_settings_are_checked(values, match):
    with pytest.raises(ValueError, match=match):
        StudyArguments(**values)


def test_train_help_is_short_and_help_all_lists_every_option(capsys):
    train = load_script("train")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    short = capsys.readouterr().out
    assert len(short.splitlines()) <= 100
    assert short.startswith("usage: train.py --size SIZE")
    for shown in ("--size SIZE", "--dataset", "--max-tokens", "--learning-rate", "--output-dir", "--help-all"):
        assert shown in short, shown
    for hidden in ("--per-device-train-batch-size", "--gradient-accumulation-steps", "--gradient-checkpointing",
                   "--budget-role"):
        assert hidden not in short, hidden
    with pytest.raises(SystemExit):
        train.main(["--help-all"])
    full = capsys.readouterr().out
    assert len(full.splitlines()) > 300 and "--gradient-checkpointing" in full and "--budget-role" in full
    refused = full[full.index("--per-device-train-batch-size"):].split("\n  --")[0]
    assert " ".join(refused.split()).endswith("REFUSED if set: derived from global_batch_tokens, "
                                              "max_device_batch_size and max_tokens")
