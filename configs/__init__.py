"""Configuration files and builders: model sizes, study hyperparameters, tokenizers.

The YAML files live beside this module (`configs/sizes/*.yaml`, `configs/study.yaml`,
`configs/tokenizer/*.yaml`), so they install with the package and resolve from anywhere.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
SIZES_DIR = CONFIG_DIR / "sizes"
TOKENIZER_CONFIG_DIR = CONFIG_DIR / "tokenizer"
DEFAULT_TOKENIZER_CONFIG = TOKENIZER_CONFIG_DIR / "remi.yaml"
