"""The report's "Compute-optimal scaling" section, from an `analysis.compute_optimal.ComputeAnalysis`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analysis.compute_optimal import CONVENTION_TEXT, CONVENTIONS, TURN_UP_RISE, ComputeAnalysis
from analysis.data_constrained import LOG_R_STAR_BOUNDS
from analysis.power_law import PowerLawFit

ISOFLOP_PLOT_FILE = "isoflop_profiles.png"
FRONTIER_PLOT_FILE = "compute_frontier.png"
LOSS_VS_D_PLOT_FILE = "loss_vs_tokens.png"
EPOCHS_PLOT_FILE = "loss_vs_epochs.png"


def _num(x: Any, fmt: str = "{:.3g}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _ci(ci: Any, fmt: str = "{:.3g}") -> str:
    """``[lo, hi]``; an unbounded upper side (inf, or None in JSON-cleaned pairs) as ∞."""
    if ci is None:
        return "(no interval)"
    lo, hi = ci
    if lo is None or (hi is not None and math.isnan(hi)) or math.isnan(lo):
        return "(no interval)"
    return f"[{fmt.format(lo)}, {'∞' if hi is None or math.isinf(hi) else fmt.format(hi)}]"


def _joint_table(result: ComputeAnalysis) -> list[str]:
    out = ["| convention | E | A | B | α | β | a = β/(α+β) | b = α/(α+β) | runs |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for conv in CONVENTIONS:
        fit = result.chinchilla.get(conv)
        if fit is None:
            out.append(f"| {conv} | not fitted: {result.chinchilla_reason.get(conv, '')} ||||||||")
            continue
        out.append(f"| {conv}{' (primary)' if conv == result.convention else ''} | "
                   f"{fit.E:.3g} {_ci(fit.E_ci)} | {fit.A:.3g} {_ci(fit.A_ci)} | "
                   f"{fit.B:.3g} {_ci(fit.B_ci)} | "
                   f"{fit.alpha:.3f} {_ci(fit.alpha_ci, '{:.3f}')} | {fit.beta:.3f} {_ci(fit.beta_ci, '{:.3f}')} | "
                   f"{fit.a:.3f} {_ci(fit.a_ci, '{:.3f}')} | {fit.b:.3f} {_ci(fit.b_ci, '{:.3f}')} | {fit.n_points} |")
    return out


def _convention_shift(result: ComputeAnalysis) -> str:
    fits = dict(result.chinchilla)
    if len(fits) < 2:
        return ""
    alphas = ", ".join(f"{k} {f.alpha:.3f}" for k, f in fits.items())
    a_vals = ", ".join(f"{k} {f.a:.3f}" for k, f in fits.items())
    spread_alpha = max(f.alpha for f in fits.values()) - min(f.alpha for f in fits.values())
    spread_a = max(f.a for f in fits.values()) - min(f.a for f in fits.values())
    return (f"By convention, α: {alphas} (spread {spread_alpha:.3f}); a (N_opt ∝ C^a): {a_vals} (spread "
            f"{spread_a:.3f}). β and D are the same in every convention (D is counted one way); what moves is how "
            "much of the model counts as N. At small N the embeddings and the output head are a large share of the "
            "parameters and FLOPs, which is why the conventions disagree most on small models (Porian et al. 2024).")


def _isoflop_lines(result: ComputeAnalysis) -> list[str]:
    out = [f"![IsoFLOP profiles]({ISOFLOP_PLOT_FILE})", ""]
    iso = result.isoflop
    if iso is None:
        return out + [f"No IsoFLOP fit: {result.isoflop_reason}", ""]
    out += ["| budget C (FLOPs) | runs | sizes | N_opt | D_opt | loss at N_opt | used |",
            "|---:|---:|---:|---:|---:|---:|---|"]
    for b in sorted(iso.budgets, key=lambda b: b.compute_flops):
        out.append(f"| {b.compute_flops:.3g} | {b.n_runs} | {b.n_sizes} | {_num(b.n_opt)} | {_num(b.d_opt)} | "
                   f"{_num(b.loss_opt, '{:.4f}')} | {'yes' if b.used else b.reason} |")
    out += ["", f"**N_opt ∝ C^{iso.a:.3f}** {_ci(iso.a_ci, '{:.3f}')}, **D_opt ∝ C^{iso.b:.3f}** "
            f"{_ci(iso.b_ci, '{:.3f}')} from {iso.n_budgets_used} budget(s) (Hoffmann et al. 2022 find a ≈ b ≈ 0.5 "
            "for text).", ""]
    return out


def _predictions_lines(result: ComputeAnalysis) -> list[str]:
    if not result.predictions:
        return ["No predictions: no finished runs.", ""]
    out = [f"Budgets beyond the largest run (C = {result.max_c:.3g} FLOPs, {result.convention} convention); "
           "intervals are the bootstrap's.", "",
           "| C (FLOPs) | × largest run | N_opt (approach 3) | D_opt (approach 3) | D/N | predicted loss "
           "(nats/token) | N_opt (approach 2) | D_opt (approach 2) |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result.predictions:
        ratio = row["D_opt"] / row["N_opt"] if row["N_opt"] else None
        out.append(f"| {row['C']:.3g} | {row['factor']:g} | {_num(row['N_opt'])} {_ci(row['N_opt_ci'])} | "
                   f"{_num(row['D_opt'])} {_ci(row['D_opt_ci'])} | {_num(ratio, '{:.1f}')} | "
                   f"{_num(row['loss'], '{:.4f}')} {_ci(row['loss_ci'], '{:.4f}')} | {_num(row['N_opt_isoflop'])} | "
                   f"{_num(row['D_opt_isoflop'])} |")
    return [*out, ""]


def _trust_paragraph(result: ComputeAnalysis) -> str:
    runs = result.runs
    n_runs, n_sizes, n_budgets = len(runs), runs["N_x"].nunique(), runs["D"].nunique()
    joint = result.chinchilla.get(result.convention)
    parts = [f"These fits rest on {n_runs} finished runs ({n_sizes} sizes, {n_budgets} distinct token budgets); "
             f"the predictions extrapolate 10× and 100× beyond the largest run."]
    if joint is not None:
        width = [hi - lo for lo, hi in (joint.alpha_ci, joint.beta_ci) if math.isfinite(lo) and math.isfinite(hi)]
        if width:
            parts.append(f"The joint law's exponents are known to ±{max(width) / 2:.2f} (half the widest 95 % "
                         f"interval of α and β), and an error δ in the allocation exponent a multiplies N_opt by "
                         f"100^δ at 100× compute: ±0.05 already means a factor {100 ** 0.05:.2f}.")
        else:
            parts.append("The joint law has no intervals (too few runs to bootstrap), so its predictions carry no "
                         "stated uncertainty at all.")
        if joint.E < 1e-3 * float(runs[result.metric].min()):
            parts.append("E, the irreducible loss, went to its lower bound (zero): these runs do not resolve it, so "
                         "the predictions assume the loss keeps falling as a pure power law, which is optimistic.")
        spread = [hi / lo for lo, hi in (joint.A_ci, joint.B_ci) if lo > 0 and math.isfinite(hi)]
        if spread and max(spread) > 10:
            parts.append(f"A and B are uncertain by up to a factor {max(spread):,.0f} (their intervals' ratio): the "
                         "coefficients trade off against the exponents, and the runs do not separate them.")
        if joint.n_points < 20:
            parts.append(f"With {joint.n_points} runs for 5 parameters the fit is only weakly constrained: "
                         "Besiroglu et al. (2024) found Chinchilla's own approach-3 fit, on about 400 runs, off "
                         "because its optimiser stopped early, and its reported intervals implausibly narrow. "
                         "Read the table as a direction, not a plan.")
    if result.isoflop is not None and joint is not None:
        gap = abs(result.isoflop.a - joint.a)
        verdict = ("they agree" if gap < 0.1 else
                   f"they disagree by {gap:.2f}, a sign that the runs do not pin the optimum down")
        parts.append(f"Approaches 2 and 3 give a = {result.isoflop.a:.3f} and {joint.a:.3f} ({verdict}).")
    parts.append("Small models also sit where embeddings, the output head and untuned hyperparameters weigh most "
                 "(Porian et al. 2024): a law fitted below 1M parameters may bend before 100M.")
    return " ".join(parts)


def _law_table(result: ComputeAnalysis) -> list[str]:
    """The comparison of the laws of repeated data (`analysis.law_comparison`), best held-out first named."""
    rows = result.law_comparison
    checks = list(dict.fromkeys(name for row in rows for name in row.held_out))
    out = ["| law | parameters | rms of ln L, all runs | AICc | "
           + " | ".join(f"held out: {c} (rms / max error / R²)" for c in checks) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(checks)]
    reasons: list[str] = []
    for row in rows:
        if row.reason:
            out.append(f"| {row.law} | {row.n_params} | not fitted: {row.reason} |" + " |" * (len(checks) + 1))
            continue
        cells = []
        for c in checks:
            score = row.held_out.get(c)
            if score is not None and score.reason:
                reasons.append(f"{row.law}, {c}: {score.reason}")
            cells.append("-" if score is None else f"no refit ({len(reasons)})" if score.reason else
                         f"{score.rmse_log:.1%} / {score.max_error:.0%} / {_num(score.r2, '{:.2f}')}")
        out.append(f"| {row.law} | {row.n_params} | {row.rmse_log:.1%} | {_num(row.aicc, '{:.1f}')} | "
                   + " | ".join(cells) + " |")
    out.append("")
    out += [f"({i}) {reason}" + ("" if reason.endswith(".") else ".") for i, reason in enumerate(reasons, 1)]
    out += [""] if reasons else []
    lead = []
    for c in checks:
        scored = [r for r in rows
                  if c in r.held_out and not r.held_out[c].reason and math.isfinite(r.held_out[c].rmse_log)]
        if scored:
            best = min(scored, key=lambda r: r.held_out[c].rmse_log)
            n_test = best.held_out[c].n_test
            lead.append(f"on the {n_test} runs of the {c} check, held out of the refit, **{best.law}** predicts best "
                        f"(rms {best.held_out[c].rmse_log:.1%} of the loss)")
    fitted = [r for r in rows if not r.reason and math.isfinite(r.aicc)]
    if fitted:
        best = min(fitted, key=lambda r: r.aicc)
        lead.append(f"on all runs the lowest AICc (fit against parameters) is **{best.law}**'s")
    return ([("Which law to trust: " + "; ".join(lead) + "."), ""] if lead else []) + out


def _turning_lines(result: ComputeAnalysis) -> list[str]:
    """Where each size's loss turned up, measured and as the SMS law predicts it."""
    points = result.turning_points
    if not points:
        return []
    sms, constrained = result.sms_law, result.data_constrained
    out = ["Where the loss turns up: for each size and U_D, the epoch count of its lowest final loss (a "
           f"later run ending more than {TURN_UP_RISE:.0%} higher means the model overfits; ≤: the fewest epochs "
           "trained, so the turn may come earlier); where the SMS law's prediction is lowest (∞: still falling at "
           "1,000 epochs); and the loss each law predicts for one epoch more than the most trained.", "",
           "| size | N | U_D | epochs trained | lowest loss at | turned up | SMS law: lowest at | one more epoch: "
           "data-constrained / SMS law |",
           "|---|---:|---:|---|---:|---|---:|---:|"]
    for p in points:
        predicted = sms.overfitting_epochs(p["N"], p["U_D"]) if sms is not None else math.nan
        more = (max(p["epochs"]) + 1) * p["U_D"]
        next_losses = [float(fit.predict(p["N"], more, p["U_D"])) if fit is not None else math.nan
                       for fit in (constrained, sms)]
        first = p["best_epochs"] == min(p["epochs"]) and p["turned_up"]
        trend = (f"yes, +{p['rise']:.1%} by {max(p['epochs']):g}" if p["turned_up"] else
                 f"no, still falling at {max(p['epochs']):g}" if p["rise"] <= 0 else
                 f"flat (+{p['rise']:.1%} by {max(p['epochs']):g})")
        out.append(f"| {p['size']} | {p['N']:,.0f} | {p['U_D']:,.0f} | "
                   + ", ".join(f"{e:g}" for e in p["epochs"])
                   + f" | {'≤ ' if first else ''}{p['best_epochs']:g} epochs ({min(p['losses']):.4f}) | " + trend
                   + f" | {'∞' if math.isinf(predicted) else _num(predicted, '{:.1f}')} | "
                   + " / ".join(_num(v, "{:.4f}") for v in next_losses) + " |")
    return [*out, ""]


def _music_vs_text(result: ComputeAnalysis) -> list[str]:
    """Where these runs behave like text (Muennighoff et al. 2023) and like MuPT's ABC, in numbers:
    R_D* from the law of repeated data that describes the runs (rms residual <= 5 %), and where the
    loss turned up."""
    out = []
    laws = [("the data-constrained law", result.data_constrained), ("the SMS law", result.sms_law)]
    usable = [(name, fit) for name, fit in laws if fit is not None and fit.rmse_log <= 0.05]
    if usable:
        name, fit = usable[0]
        low, high = fit.intervals["R_D_star"]
        if math.isfinite(low) and math.isfinite(high):
            verdict = ("faster than on text" if high < 15.4 else "slower than on text" if low > 15.4 else
                       "at a rate these runs cannot tell from text's")
            out.append(f"- Repeats lose their value {verdict}: R_D* = {fit.R_D_star:.3g} [{low:.3g}, {high:.3g}] by "
                       f"{name} (rms residual {fit.rmse_log:.1%}), against 15.4 fitted on text (Muennighoff et al. "
                       "2023, where 4 epochs are worth almost 4 of new data).")
    elif any(fit is not None for _, fit in laws):
        out.append("- R_D* cannot be compared with text's 15.4: no law of repeated data describes these runs to 5 % "
                   "(rms residuals: " + ", ".join(f"{name} {fit.rmse_log:.0%}" for name, fit in laws if fit is not None)
                   + ").")
    points = result.turning_points
    if points:
        for unique in sorted({p["U_D"] for p in points}):
            series = [p for p in points if p["U_D"] == unique]
            turned = [p for p in series if p["turned_up"]]
            most = max(max(p["epochs"]) for p in series)
            if turned:
                out.append(f"- U_D = {unique:,.0f} tokens: {', '.join(p['size'] for p in turned)} turned up, lowest at "
                           + ", ".join(("≤ " if p["best_epochs"] == min(p["epochs"]) else "") + f"{p['best_epochs']:g}"
                                       for p in turned)
                           + f" epochs; {len(series) - len(turned)} of {len(series)} sizes did not within {most:g}.")
            else:
                out.append(f"- U_D = {unique:,.0f} tokens: no size turned up within {most:g} epochs.")
        turned = [p for p in points if p["turned_up"]]
        here = (f"here the lowest loss of a series that turned up came after {min(p['best_epochs'] for p in turned):g} "
                "epochs or more" if turned else "here no series turned up")
        out.append("- MuPT's ABC models (190M-4B parameters, U_D of 2-34B tokens) overfit after about 3 epochs (Qu "
                   "et al. 2024, sec. 4.2.3) and text keeps gaining to about 16 (Muennighoff et al. 2023); "
                   f"{here}.")
    return (["Music against text:", "", *out, ""]) if out else []


def _repeated_data_lines(result: ComputeAnalysis) -> list[str]:
    """The laws of repeated data: their comparison on held-out runs first, then the loss against
    epochs, where it turns up, R_D* of the data-constrained and SMS laws, and music against text."""
    runs = result.repeated_runs
    if not len(runs):
        return []
    repeats = runs[runs["epochs"].to_numpy(float) > 1 + 1e-9]
    out = ["### Repeated data", "",
           f"{len(repeats)} runs repeated a unique subset of U_D tokens for several epochs "
           f"(U_D = {', '.join(f'{u:,.0f}' for u in sorted(repeats['U_D'].unique()))}; epochs "
           f"{', '.join(f'{e:g}' for e in sorted(repeats['epochs'].unique()))}). A repeated token is not a new one, so "
           "these runs are left out of every fit above. Here three laws of repeated data, and Chinchilla's counting "
           "repeats as new data, are fitted to them and the runs that saw their U_D once "
           f"({len(runs)} runs), and each is refitted without part of the runs to predict that part:", "",
           "- data-constrained (Muennighoff et al. 2023, sec. 3.1): L = E + A/N^α + B/D'^β with "
           "D' = U_D + U_D·R_D*·(1 − exp(−R_D/R_D*)), R_D = D/U_D − 1; a repeated token is worth less with each "
           "pass, by the constant R_D* (15.4 on text);",
           "- SMS (Qu et al. 2024, MuPT, eq. 2 and 3): L = d/(N^α·D''^β) + A/N^α + B/D''^β + E "
           "+ GELU(k_d·D + k_n·ln N − k_u·ln U_D − k_in), D'' = U_D·(1 − k^(D/U_D))/(1 − k), k = R_D*/(1 + R_D*); "
           "eq. 2 is the same without the GELU overfitting term.", ""]
    out += _law_table(result)
    out += [f"![Loss vs. epochs]({EPOCHS_PLOT_FILE})", ""]
    out += _turning_lines(result)
    fit = result.data_constrained
    if fit is None:
        out += [f"No data-constrained fit: {result.data_constrained_reason}.", ""]
    else:
        out += ["Data-constrained law, fitted in two stages as Muennighoff et al.: the Chinchilla parameters on the "
                "runs that saw their data once, then R_D*: "
                f"**R_D* = {fit.R_D_star:.3g}** {_ci(fit.intervals['R_D_star'])} ({fit.n_points} runs; "
                f"E = {fit.E:.3f}, α = {fit.alpha:.3f}, β = {fit.beta:.3f}; rms residual {fit.rmse_log:.2%} in log "
                "loss).", ""]
        checks = [c for c in result.data_constrained_holdout if "error" in c]
        if checks:
            errors = np.array([c["error"] for c in checks])
            half = max(c["epochs"] for c in checks) / 2
            out += [f"Refitted on the runs of at most {half:g} epochs, it predicts the {len(checks)} runs of more "
                    f"epochs with errors from {errors.min():+.1%} to {errors.max():+.1%} (mean absolute "
                    f"{np.abs(errors).mean():.1%}).", ""]
        elif result.data_constrained_holdout:
            out += [f"No check: {result.data_constrained_holdout[0]['reason']}.", ""]
        if fit.rmse_log > 0.05:
            out += [f"**The data-constrained law does not describe these runs** (rms residual {fit.rmse_log:.0%} of "
                    "the loss, against the few per cent of noise it assumes): the loss here moves with something the "
                    "form leaves out (an unfinished transient, or overfitting), so its R_D* means little.", ""]
    sms = result.sms_law
    if sms is None:
        out += [f"No SMS-law fit: {result.sms_law_reason}.", ""]
    else:
        out += [f"SMS law (eq. 3), fitted on all {sms.n_points} runs: **R_D* = {sms.R_D_star:.3g}** "
                f"{_ci(sms.intervals.get('R_D_star'))}, α = {sms.alpha:.3f}, β = {sms.beta:.3f}, E = {sms.E:.3f}, "
                f"d = {sms.d:.3g}; overfitting term k_d = {sms.k_d:.3g}/token, k_n = {sms.k_n:.3g}, "
                f"k_u = {sms.k_u:.3g}, k_in = {sms.k_in:.3g}; rms residual {sms.rmse_log:.2%} in log loss "
                f"({sms.n_bootstrap_used} bootstrap refits for the intervals)."
                + (" R_D* sits at the top of its search range (1,000): in these runs a repeat costs nothing the law "
                   "can measure." if sms.R_D_star > 0.99 * math.exp(LOG_R_STAR_BOUNDS[1]) else ""), ""]
    out += _music_vs_text(result)
    if fit is not None:
        largest_u = repeats["U_D"].max()
        out += ["| size | N | epochs of U_D = " + f"{largest_u:,.0f}" + " tokens after which one more gains < 0.1 % "
                "(data-constrained law) |", "|---|---:|---:|"]
        for size, group in runs.groupby("size", sort=False):
            n = float(group["N_x"].iloc[0])
            out.append(f"| {size} | {n:,.0f} | {fit.epochs_worth_training(n, largest_u):g} |")
        out.append("")
    return out


def compute_section(result: ComputeAnalysis, loss_vs_d_sizes: int) -> str:
    """Markdown of the compute-optimal section (joint law, IsoFLOP, frontier, L(D), predictions, trust).

    Args:
        result: output of `analysis.compute_optimal.analyze_compute`.
        loss_vs_d_sizes: number of sizes with an L(D) fit (0: the L(D) table is skipped).

    Returns:
        Markdown ending with a newline, linking `ISOFLOP_PLOT_FILE`, `FRONTIER_PLOT_FILE` and
        `LOSS_VS_D_PLOT_FILE`.
    """
    out = ["## Compute-optimal scaling", "",
           f"All finished runs, every size and token budget (loss: `{result.metric}`, final values only; the "
           "evaluations logged during a run are biased upwards by its unfinished cosine schedule, so they are "
           "drawn but never fitted). Conventions:", ""]
    out += [f"- `{c}`: {CONVENTION_TEXT[c]}" for c in CONVENTIONS]
    branches = result.runs[result.runs["branch_of"].fillna("") != ""] if "branch_of" in result.runs else []
    if len(branches):
        out += ["", f"{len(branches)} of these runs are cooldown branches (Hägele et al. 2024): each resumed the "
                "stable phase of its size's warmup-stable-decay run and decayed its rate to 0 over its last steps "
                "((1 − sqrt) shape), where the other runs follow the study's own schedule: "
                + ", ".join(f"`{n}` (of `{b}`)" for n, b in zip(branches["run_name"], branches["branch_of"],
                                                                  strict=True))
                + ". The stable runs are not fitted (their rate never decayed)."]
    out += ["", f"Plots and predictions use `{result.convention}`.", "",
            "### Joint law (Chinchilla approach 3)", "",
            "L(N, D) = E + A/N^α + B/D^β, fitted as in Hoffmann et al. (2022, appendix D.2): Huber loss (δ = 1e-3) "
            "on log L predicted through log-sum-exp, L-BFGS from a grid of starts, the best kept; 95 % intervals "
            "from refits on resampled runs (Besiroglu et al. 2024).", ""]
    out += _joint_table(result)
    shift = _convention_shift(result)
    out += ["", shift, ""] if shift else [""]
    out += ["### IsoFLOP profiles (Chinchilla approach 2)", ""] + _isoflop_lines(result)
    out += ["### Loss vs. compute", "", f"![Loss vs. compute]({FRONTIER_PLOT_FILE})", ""]
    fit_c = result.loss_vs_c
    if fit_c is not None:
        out += [f"Frontier fit L(C) = a·C^-γ + c: **γ = {fit_c.alpha:.3f}** {_ci(fit_c.alpha_ci, '{:.3f}')}, "
                f"c = {fit_c.c:.3f} nats/token, on {fit_c.n_points} frontier runs (Kaplan et al. 2020, sec. 6)."
                + (" c sits at its lower bound 0: the frontier shows no floor yet, and γ then describes a pure "
                   "power law." if fit_c.c < 1e-6 else ""), ""]
    else:
        out += [f"No L(C) fit: {result.loss_vs_c_reason}.", ""]
    out += ["### Loss vs. data", "", f"![Loss vs. tokens]({LOSS_VS_D_PLOT_FILE})", ""]
    if loss_vs_d_sizes:
        out += ["| size | β (L(D) = a·D^-β + c) | c (nats/token) | budgets |", "|---|---:|---:|---:|"]
        for size, fit in result.loss_vs_d.items():
            if isinstance(fit, PowerLawFit):
                out.append(f"| {size} | {fit.alpha:.3f} {_ci(fit.alpha_ci, '{:.3f}')} | {fit.c:.3f} | {fit.n_points} |")
        out.append("")
    else:
        out += ["No size has 3 or more token budgets, so there is no L(D) fit per size.", ""]
    out += _repeated_data_lines(result)
    out += ["### Predictions", ""] + _predictions_lines(result)
    out += ["### How far to trust this", "", _trust_paragraph(result), ""]
    return "\n".join(out) + "\n"

