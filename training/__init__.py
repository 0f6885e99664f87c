"""Training one size of a study with the Hugging Face Trainer (under Accelerate)."""
