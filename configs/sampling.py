"""How pieces are sampled from a model: one set of settings, turned into a ``GenerationConfig``.

`scripts/generate.py` takes them as flags (``--temperature 0.9``); a study file holds them as
keys for the pieces `scripts/run_study.py` samples from each size after training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import GenerationConfig


@dataclass
class SamplingArguments:
    """Ancestral sampling settings (``do_sample=True``), named as in ``transformers.GenerationConfig``."""

    _argument_group_name = "sampling"

    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Tokens to sample per piece (default and maximum: the model's context minus the prompt)."})
    min_new_tokens: int = field(default=0, metadata={
        "help": "Forbid EOS before this many tokens (0: the model ends pieces when it likes; anything else changes "
                "the model's distribution, so report it with the results)."})
    temperature: float = field(default=1.0, metadata={
        "help": "Softmax temperature (> 0; 1 = the model's own distribution)."})
    top_k: int = field(default=0, metadata={"help": "Sample among the k most likely tokens (0 = all)."})
    top_p: float = field(default=1.0, metadata={
        "help": "Nucleus sampling: the smallest set of tokens whose probability reaches p (1.0 = all)."})

    def __post_init__(self) -> None:
        if not self.temperature > 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"Need temperature > 0, 0 < top_p <= 1 and top_k >= 0; got {self.temperature}, "
                             f"{self.top_p}, {self.top_k}.")
        if self.min_new_tokens < 0 or (self.max_new_tokens is not None and self.max_new_tokens < 1):
            raise ValueError(f"Need min_new_tokens >= 0 and max_new_tokens >= 1 (or unset); got "
                             f"{self.min_new_tokens} and {self.max_new_tokens}.")

    def generation_config(self, *, context: int, prompt_tokens: int, eos_token_id: int,
                          pad_token_id: int) -> GenerationConfig:
        """The ``GenerationConfig`` that samples with these settings after a prompt.

        ``top_k=0`` and ``top_p=1.0`` switch those filters off; a sequence ends at EOS or after
        ``max_new_tokens``.

        Args:
            context: the model's context in tokens (``n_positions``).
            prompt_tokens: tokens of the prompt (1 for a lone BOS).
            eos_token_id, pad_token_id: the tokenizer's EOS and PAD ids.

        Raises:
            ValueError: the prompt fills the context, or ``max_new_tokens`` / ``min_new_tokens``
                do not fit in what is left of it.
        """
        room = context - prompt_tokens
        if room < 1:
            raise ValueError(f"The prompt has {prompt_tokens} tokens but the model's context is {context}; "
                             "lower --prompt-bars.")
        max_new_tokens = room if self.max_new_tokens is None else self.max_new_tokens
        if not 1 <= max_new_tokens <= room:
            raise ValueError(f"--max-new-tokens must be between 1 and {room} (context {context} tokens minus the "
                             f"{prompt_tokens}-token prompt); got {max_new_tokens}.")
        if not 0 <= self.min_new_tokens <= max_new_tokens:
            raise ValueError(f"--min-new-tokens must be between 0 and max_new_tokens ({max_new_tokens}); "
                             f"got {self.min_new_tokens}.")
        return GenerationConfig(do_sample=True, max_new_tokens=max_new_tokens,
                                min_new_tokens=self.min_new_tokens or None, temperature=self.temperature,
                                top_k=self.top_k, top_p=self.top_p, eos_token_id=eos_token_id,
                                pad_token_id=pad_token_id)
