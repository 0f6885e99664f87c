"""FLOPs per token and model FLOPs utilisation (MFU).

MFU = achieved model FLOP/s / peak FLOP/s of the hardware (Chowdhery et al. 2022, "PaLM",
appendix B). Only the FLOPs the model needs count (no recomputation), so MFU compares runs
across hardware, batch layouts and implementations.
"""

from __future__ import annotations

from typing import Any

# Dense (no sparsity) bf16 tensor-core peak per device, TFLOP/s, from NVIDIA's data sheets.
# Matched against torch.cuda.get_device_name() by substring, most specific first.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "V100": 125.0,  # no bf16: fp16 tensor cores
}


def flops_per_token(config: Any) -> int:
    """Training FLOPs per token of a GPT-2 model: ``6 N + 12 n_layer n_embd T``.

    ``6 N`` counts the matrix multiplies of forward (2N) and backward (4N) passes
    (Kaplan et al. 2020, sec. 2.1), with N the non-embedding parameters plus the output
    head (``n_embd * vocab_size``, tied with the token embedding, still a matmul per
    token); ``12 n_layer n_embd T`` is attention over a context of ``T = n_positions``
    tokens (PaLM appendix B; the same count as nanoGPT's ``estimate_mfu``).

    Args:
        config: a ``GPT2Config`` (n_layer, n_embd, n_inner, vocab_size, n_positions).

    Returns:
        FLOPs per trained token.
    """
    d, layers = config.n_embd, config.n_layer
    d_ff = config.n_inner or 4 * d
    per_layer = 4 * d * d + 2 * d * d_ff  # attention projections + MLP weights
    n_matmul = layers * per_layer + d * config.vocab_size
    return 6 * n_matmul + 12 * layers * d * config.n_positions


def device_peak_flops(device_name: str, override_tflops: float = 0.0) -> float | None:
    """Peak bf16 FLOP/s of one device, from ``override_tflops`` or :data:`PEAK_BF16_TFLOPS`.

    Returns:
        FLOP/s, or None when the device is unknown (CPU, an unlisted GPU): MFU is then
        not logged; pass ``--peak_tflops`` to set it.
    """
    if override_tflops > 0:
        return override_tflops * 1e12
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return tflops * 1e12
    return None


def mfu(tokens_per_second: float, flops_per_token_: int, peak_flops_per_device: float, world_size: int) -> float:
    """Model FLOPs utilisation in [0, 1]: ``tokens/s * FLOPs/token / (peak * devices)``."""
    return tokens_per_second * flops_per_token_ / (peak_flops_per_device * world_size)
