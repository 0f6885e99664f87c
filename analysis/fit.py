"""The fitters' public names in one place, for callers that import them from ``analysis.fit``.

Each law has its own module; this one only re-exports them:

- L(N) = a N^-alpha + c with profile-likelihood intervals: `analysis.power_law`.
- L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla approach 3): `analysis.chinchilla`.
- IsoFLOP profiles, N_opt and D_opt against C (Chinchilla approach 2): `analysis.isoflop`.
- The compute-efficient frontier: `analysis.frontier`.

What they share (input checks, JSON-ready numbers) is in `analysis.shared`, and their
intervals in `analysis.intervals`.
"""

from __future__ import annotations

from analysis.chinchilla import (
    CHINCHILLA_EXPONENT_MAX,
    CHINCHILLA_FORMULA,
    CHINCHILLA_GRID_E,
    CHINCHILLA_GRID_EXPONENTS,
    CHINCHILLA_GRID_LOG_AB,
    CHINCHILLA_LBFGS_OPTIONS,
    CHINCHILLA_LOG_E_MIN,
    CHINCHILLA_N_PARAMS,
    CHINCHILLA_N_STARTS,
    CHINCHILLA_PARAM_NAMES,
    ChinchillaFit,
    fit_chinchilla,
)
from analysis.frontier import compute_frontier
from analysis.isoflop import (
    ISOFLOP_BUDGET_RTOL,
    ISOFLOP_FORMULA,
    ISOFLOP_MIN_BUDGETS,
    ISOFLOP_MIN_SIZES,
    IsoFlopBudget,
    IsoFlopFit,
    fit_isoflop,
)
from analysis.power_law import FORMULA, N_PARAMS, PowerLawFit, fit_power_law

__all__ = [
    "CHINCHILLA_EXPONENT_MAX", "CHINCHILLA_FORMULA", "CHINCHILLA_GRID_E", "CHINCHILLA_GRID_EXPONENTS",
    "CHINCHILLA_GRID_LOG_AB", "CHINCHILLA_LBFGS_OPTIONS", "CHINCHILLA_LOG_E_MIN", "CHINCHILLA_N_PARAMS",
    "CHINCHILLA_N_STARTS", "CHINCHILLA_PARAM_NAMES", "FORMULA", "ISOFLOP_BUDGET_RTOL", "ISOFLOP_FORMULA",
    "ISOFLOP_MIN_BUDGETS", "ISOFLOP_MIN_SIZES", "N_PARAMS", "ChinchillaFit", "IsoFlopBudget", "IsoFlopFit",
    "PowerLawFit", "compute_frontier", "fit_chinchilla", "fit_isoflop", "fit_power_law",
]
