"""Corpus -> tokenized, deduplicated, split, packed Arrow DatasetDict (see data.pipeline)."""
