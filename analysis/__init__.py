"""Scaling-law analysis in three layers: loaders (runs on disk to DataFrames), fitters
(arrays to a frozen fit result) and plotters (results to matplotlib Figures).

`analysis.report.run_analysis` ties them together in memory; `scripts/analyze.py` writes
the files. `analysis.wandb_source.pull_wandb_runs` brings runs from Weights & Biases into a
cache of ordinary run folders, which the same loaders read. Nothing here imports torch (nor
wandb, until a pull needs it).
"""

from __future__ import annotations

from analysis.loaders import load_eval_curves, load_local_runs
from analysis.plots import plot_scaling, plot_training_curves
from analysis.power_law import PowerLawFit, fit_power_law
from analysis.report import AnalysisOutputs, run_analysis
from analysis.wandb_source import WandbPull, WandbSourceError, pull_wandb_runs

__all__ = [
    "AnalysisOutputs", "PowerLawFit", "WandbPull", "WandbSourceError", "fit_power_law", "load_eval_curves",
    "load_local_runs", "plot_scaling", "plot_training_curves", "pull_wandb_runs", "run_analysis",
]
