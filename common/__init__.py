"""Leaf helpers every layer may use (atomic file writes); nothing here imports the project's other packages."""
