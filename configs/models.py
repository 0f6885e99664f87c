"""Model sizes: ``configs/sizes/<size>.yaml`` -> ``GPT2Config``, and parameter counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from transformers import GPT2Config

from configs import SIZES_DIR

STUDY_SIZES = ("tiny", "small", "medium", "large", "xl")
DEMO_SIZES = ("micro1", "micro2", "demo0", "demo1", "demo2", "demo3", "demo4", "demo5")
# One-epoch training never repeats data, so there is nothing to regularize (Pythia,
# Chinchilla and nanoGPT's pretraining runs use no dropout either).
_SIZE_FREE_DEFAULTS = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def available_sizes() -> list[str]:
    """Names accepted by ``--size``: the YAML files in ``configs/sizes/``."""
    return sorted(p.stem for p in SIZES_DIR.glob("*.yaml"))


def load_size(size: str) -> dict[str, Any]:
    """Read a size file; ``size`` is a name from :func:`available_sizes` or a YAML path.

    Raises:
        ValueError: unknown size, or keys that are not ``GPT2Config`` arguments
            (``GPT2Config`` would silently keep ``n_layers: 48`` and train 12 layers).
    """
    path = Path(size) if size.endswith((".yaml", ".yml")) else SIZES_DIR / f"{size}.yaml"
    if not path.is_file():
        msg = f"Unknown --size {size!r}: choose one of {available_sizes()} or give a YAML path."
        raise ValueError(msg)
    values = yaml.safe_load(path.read_text()) or {}
    strangers = set(values) - set(GPT2Config().to_dict())
    if strangers:
        msg = f"{path}: keys {sorted(strangers)} are not GPT2Config arguments (e.g. n_layer, n_embd, n_head)."
        raise ValueError(msg)
    for key in ("n_layer", "n_embd", "n_head"):
        if not isinstance(values.get(key), int) or values[key] < 1:
            raise ValueError(f"{path}: {key} must be a positive integer, got {values.get(key)!r}.")
    if values["n_embd"] % values["n_head"]:
        raise ValueError(f"{path}: n_embd {values['n_embd']} is not divisible by n_head {values['n_head']}.")
    return values


def build_model_config(size: str, vocab_size: int, block_size: int, bos_token_id: int,
                       eos_token_id: int, pad_token_id: int) -> GPT2Config:
    """The one builder of model configs: size shape + dataset-derived values.

    Args:
        size: see :func:`load_size`.
        vocab_size: from the dataset's saved tokenizer.
        block_size: packed sequence length; becomes ``n_positions``.
        bos_token_id, eos_token_id, pad_token_id: from the tokenizer.

    Returns:
        ``GPT2Config`` with dropout 0 unless the size file sets it.
    """
    shape = {**_SIZE_FREE_DEFAULTS, **load_size(size)}
    return GPT2Config(vocab_size=vocab_size, n_positions=block_size, bos_token_id=bos_token_id,
                      eos_token_id=eos_token_id, pad_token_id=pad_token_id, **shape)


def count_parameters(config: GPT2Config) -> dict[str, int]:
    """Parameter counts without building the model (closed form for GPT-2).

    Per block: attention ``4 d^2 + 4 d`` (qkv and projection with biases), MLP
    ``2 d f + f + d`` (``f = n_inner or 4 d``), two LayerNorms ``4 d``; plus the final
    LayerNorm ``2 d``. With ``f = 4 d`` this is ``n_layer (12 d^2 + 13 d) + 2 d``, the
    non-embedding N of Kaplan et al. 2020 (section 2.1) as counted by
    ``model.num_parameters(exclude_embeddings=True)``. Embeddings: token
    ``vocab_size x d`` (tied with the output head) and position ``n_positions x d``.

    Returns:
        ``{"n_params": total, "n_params_non_embedding": N, "n_params_embedding": ...}``.
    """
    d, f = config.n_embd, config.n_inner or 4 * config.n_embd
    non_embedding = config.n_layer * (4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d) + 2 * d
    embedding = (config.vocab_size + config.n_positions) * d
    return {"n_params": non_embedding + embedding, "n_params_non_embedding": non_embedding,
            "n_params_embedding": embedding}


def size_table(vocab_size: int, block_size: int, sizes: list[str] | None = None) -> list[dict[str, Any]]:
    """Shape and parameter counts of each size for a given vocabulary and block size.

    Args:
        vocab_size: tokenizer vocabulary (embedding rows).
        block_size: sequence length (position embedding rows).
        sizes: names to list (default: every file in ``configs/sizes/``, smallest N first).

    Returns:
        Rows ``{"size", "n_layer", "n_embd", "n_head", "n_inner", "n_params",
        "n_params_non_embedding", "n_params_embedding"}`` sorted by N.
    """
    rows = []
    for size in sizes or available_sizes():
        config = build_model_config(size, vocab_size, block_size, 1, 2, 0)
        rows.append({"size": size, "n_layer": config.n_layer, "n_embd": config.n_embd, "n_head": config.n_head,
                     "n_inner": config.n_inner or 4 * config.n_embd, **count_parameters(config)})
    return sorted(rows, key=lambda r: r["n_params_non_embedding"])
