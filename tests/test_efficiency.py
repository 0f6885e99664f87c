"""FLOPs per token and MFU (PaLM appendix B, as in nanoGPT's estimate_mfu)."""

from __future__ import annotations

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from training.efficiency import device_peak_flops, flops_per_token, mfu


def test_flops_per_token_matches_the_nanogpt_count():
    config = GPT2Config(n_layer=2, n_embd=128, n_head=2, vocab_size=600, n_positions=256)
    model = GPT2LMHeadModel(config)
    # nanoGPT: N = all parameters but the position embedding (the head is tied to wte)
    n = model.num_parameters() - model.transformer.wpe.weight.numel()
    nanogpt = 6 * n + 12 * 2 * 128 * 256
    assert flops_per_token(config) == pytest.approx(nanogpt, rel=0.01)  # we leave out biases and norms
    assert flops_per_token(config) == 6 * (2 * (4 * 128**2 + 2 * 128 * 512) + 128 * 600) + 12 * 2 * 128 * 256
    # GPT-2 small (124M, context 1024): about 854 MFLOPs per token, as nanoGPT reports
    assert flops_per_token(GPT2Config()) == pytest.approx(854.3e6, rel=1e-3)


def test_peak_lookup_override_and_mfu():
    assert device_peak_flops("NVIDIA H200") == 989e12
    assert device_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert device_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert device_peak_flops("cpu") is None
    assert device_peak_flops("cpu", override_tflops=2.0) == 2e12
    # 1e5 tokens/s x 1e9 FLOPs/token on 2 devices of 1e14 FLOP/s: half the hardware's peak
    assert mfu(1e5, 10**9, 1e14, 2) == pytest.approx(0.5)
