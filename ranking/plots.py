"""The run's four PNG plots: p-values against chance, by hyperparameter, precision against volume, best over time.

matplotlib's object API (Figure, FigureCanvasAgg), not pyplot: no global
state and no display backend, so plots draw the same in any process.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import special

from inputs.atomic import atomic_write
from ranking.values import (
    minus_log10,
    ordered_values,
    ranked_trials,
    value_labels,
    varying_hyperparameters,
)

DPI = 110
POINT_COLOR = "tab:blue"
REFERENCE_COLOR = "tab:red"


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, left: float = 0.75,
               right: float = 0.2, bottom: float = 0.6, top: float = 0.4, wgap: float = 0.35, hgap: float = 0.75,
               **subplot_options):
    """A figure drawn by the Agg backend, outside pyplot, with fixed margins (inches).

    Not using pyplot means no display is ever needed, no global figure list
    to leak into (nothing to close), and safe use from any thread. Fixed
    margins rather than a layout engine: constrained layout measured every
    label on each save, a third of the report's time.
    """
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes_width = (width - left - right - wgap * (ncols - 1)) / ncols
    axes_height = (height - bottom - top - hgap * (nrows - 1)) / nrows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wgap / axes_width, hspace=hgap / axes_height)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplot_options)


def save_png(fig, path: Path) -> None:
    """Save to a temporary file in the same folder, then rename into place."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI), binary=True)
    finally:
        fig.clear()


def say_no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_p_value_qq(ranking: pd.DataFrame, path: Path) -> None:
    """QQ plot of the combinations' p-values against the uniform law of 'no skill', on -log10 scales.

    A QQ plot rather than a histogram: a sweep has tens of combinations, too
    few for a histogram's bins, and the p-values that matter (the small ones)
    would all fall in its first bin. On -log10 scales every combination is a
    dot and the small p-values get the most room; the band shows how far
    from the diagonal luck alone can push the k-th smallest of n p-values.
    """
    fig, axes = new_figure(4.6, 4.2)
    ax = axes[0, 0]
    p = np.sort(ranking["p_value"].dropna().to_numpy(dtype=float))
    if len(p) == 0:
        say_no_data(ax, "no finished combinations")
    else:
        expected, low, high = uniform_order_statistics(len(p))
        top = max(minus_log10(low).max(), minus_log10(p).max()) * 1.05 + 0.05
        ax.fill_between(minus_log10(expected), minus_log10(high), minus_log10(low), color="0.85",
                        label="95% band under no skill")
        ax.plot([0, top], [0, top], color=REFERENCE_COLOR, lw=1, label="no skill (uniform)")
        significant = significant_mask(ranking, p)
        ax.scatter(minus_log10(expected)[~significant], minus_log10(p)[~significant], s=18, color=POINT_COLOR,
                   label="combination", zorder=3)
        if significant.any():
            ax.scatter(minus_log10(expected)[significant], minus_log10(p)[significant], s=28, color="tab:orange",
                       label="significant (q_value)", zorder=4)
        ax.set_xlim(0, top)
        ax.set_ylim(-0.04 * top, top)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_xlabel("expected -log10 p (no skill)")
    ax.set_ylabel("observed -log10 p (block permutation)")
    ax.set_title(f"p-values vs chance ({len(p)} combinations)")
    save_png(fig, path)


def uniform_order_statistics(n: int):
    """Expected value and 95% interval of the k-th smallest of n uniform p-values, k = 1..n (Beta(k, n+1-k))."""
    k = np.arange(1, n + 1)
    return k / (n + 1), special.betaincinv(k, n + 1 - k, 0.025), special.betaincinv(k, n + 1 - k, 0.975)


def significant_mask(ranking: pd.DataFrame, sorted_p: np.ndarray) -> np.ndarray:
    """Which of the sorted p-values belong to combinations marked significant."""
    if "significant_fdr" not in ranking:
        return np.zeros(len(sorted_p), dtype=bool)
    rows = ranking.dropna(subset=["p_value"]).sort_values("p_value", kind="mergesort")
    return rows["significant_fdr"].astype(str).str.lower().eq("true").to_numpy()


def plot_p_by_hyperparameter(ranking: pd.DataFrame, path: Path) -> None:
    """-log10 p per value, one small panel per varying hyperparameter, on a shared y-axis."""
    names = varying_hyperparameters(ranking)
    ncols = 2 if len(names) == 4 else min(max(len(names), 1), 3)
    nrows = max(math.ceil(len(names) / ncols), 1)
    fig, axes = new_figure(max(3.2 * ncols, 5.0), 2.8 * nrows + 0.3, nrows, ncols, top=0.7, bottom=0.85,
                           hgap=1.0, sharey=True)
    if not names:
        say_no_data(axes[0, 0], "no hyperparameter takes more than one value")
    for i, (ax, name) in enumerate(zip(axes.flat, names)):
        draw_values_panel(ax, ranking, name)
        if i % ncols == 0:
            ax.set_ylabel("-log10 p")
    for unused in list(axes.flat)[len(names):] if names else []:
        unused.set_visible(False)
    fig.suptitle("-log10 p by hyperparameter value (higher is better)", fontsize=11)
    save_png(fig, path)


def draw_values_panel(ax, ranking: pd.DataFrame, name: str) -> None:
    labels = value_labels(ranking, name)
    scores = minus_log10(ranking.loc[labels.index, "p_value"])
    values = ordered_values(labels)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(labels))  # fixed: the same picture every time
    positions = labels.map({v: i for i, v in enumerate(values)}).to_numpy(dtype=float)
    ax.scatter(positions + jitter, scores, s=14, color=POINT_COLOR, alpha=0.7)
    for i, value in enumerate(values):
        ax.hlines(np.median(scores[labels.to_numpy() == value]), i - 0.3, i + 0.3, color="black", lw=2)
    ax.axhline(minus_log10(0.05), color="0.6", lw=0.8, ls=":")
    ax.set_xticks(range(len(values)))
    long_labels = sum(map(len, values)) > 24
    ax.set_xticklabels(values, rotation=25 if long_labels else 0, ha="right" if long_labels else "center",
                       fontsize=8)
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_title(name, fontsize=10)


def plot_precision_vs_predicted(ranking: pd.DataFrame, path: Path) -> None:
    """Precision against predicted positives per combination, coloured by -log10 p, with the base rate."""
    fig, axes = new_figure(5.4, 4.0, right=0.1)
    ax = axes[0, 0]
    predicted = (ranking["tp"] + ranking["fp"]).to_numpy(dtype=float)
    precision = ranking["precision"].to_numpy(dtype=float)
    shown = np.isfinite(precision) & (predicted > 0)
    base_rate = positive_rate(ranking)
    if not shown.any():
        say_no_data(ax, "no combination predicted any positive")
    else:
        scores = minus_log10(ranking["p_value"].to_numpy(dtype=float))[shown]
        points = ax.scatter(predicted[shown], precision[shown], c=scores, cmap="viridis", s=24,
                            vmin=0, vmax=max(scores.max(), 1.0), zorder=3, edgecolor="0.3", linewidth=0.3)
        fig.colorbar(points, ax=ax, label="-log10 p")
        if predicted[shown].max() / predicted[shown].min() > 50:
            ax.set_xscale("log")
            # plain numbers (20, 100, 300) rather than powers of ten: easier to read, and no
            # mathtext to typeset (its parser cost ~0.05 s of the sweep's last half second)
            ax.xaxis.set_major_formatter(ticker.LogFormatter())
            ax.xaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
        if np.isfinite(base_rate):
            ax.axhline(base_rate, color=REFERENCE_COLOR, lw=1, label=f"base rate {base_rate:.3f}")
        ax.set_ylim(max(min(np.nanmin(precision[shown]), base_rate if np.isfinite(base_rate) else 1) - 0.08, -0.02),
                    1.02)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    hidden = int((~shown).sum())
    note = f" ({hidden} predicting nothing not shown)" if hidden else ""
    ax.set_title(f"Precision vs predicted positives{note}", fontsize=10)
    ax.set_xlabel("predicted positives (tp + fp, pooled over reruns)")
    ax.set_ylabel("precision (pooled over reruns)")
    save_png(fig, path)


def positive_rate(ranking: pd.DataFrame) -> float:
    """The evaluation set's share of positives (the precision of guessing); NaN when unknown."""
    if "positive_rate" in ranking and ranking["positive_rate"].notna().any():
        return float(ranking["positive_rate"].median())
    counts = ranking[["tp", "fp", "tn", "fn"]].sum(axis=1)
    rate = (ranking["tp"] + ranking["fn"]) / counts.where(counts > 0)
    return float(rate.median()) if rate.notna().any() else float("nan")


def plot_best_over_time(study, path: Path, combinations=None) -> None:
    """The best p-value so far as combinations finished, with each combination's own p-value behind it."""
    p, xlabel, duration = completion_history(study, combinations)
    x = np.arange(1, len(p) + 1)
    fig, axes = new_figure(5.0, 3.4)
    ax = axes[0, 0]
    if len(p) == 0:
        say_no_data(ax, "no finished combinations")
    else:
        best = np.minimum.accumulate(p)
        ax.scatter(x, minus_log10(p), s=10, color="0.65", label="combination", zorder=2)
        ax.step(x, minus_log10(best), where="post", color=POINT_COLOR, lw=1.8, label="best so far", zorder=3)
        ax.annotate(f"best p = {best[-1]:.3g}", (x[-1], minus_log10(best[-1])), textcoords="offset points",
                    xytext=(-4, 6), ha="right", fontsize=8)
        top = max(minus_log10(best[-1]) * 1.15, 1.0)
        ax.set_ylim(-0.04 * top, top)
        ax.set_xlim(0.5, len(p) + 0.5)
        ax.legend(loc="center right", fontsize=8, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("-log10 p (higher is better)")
    ax.set_title("Best p-value over the sweep" + (f" ({len(p)} combinations in {duration})" if duration else ""),
                 fontsize=10)
    save_png(fig, path)


def completion_history(study, combinations=None) -> tuple[np.ndarray, str, str]:
    """(p-value per finished combination in completion order, x-axis label, how long they took or '').

    The order is the study's completion times (nothing without a study), of
    the ranked combinations' trials (ranked_trials: `combinations`, None for all).
    The x-axis counts combinations rather than showing clock time: fused
    trainings finish in bursts, and a resumed run has a gap, both of which
    squash a time axis; "after k combinations" is the question anyway.
    """
    history = study_history(study, combinations) if study is not None else None
    return history if history is not None else (np.array([]), "combinations finished", "")


def study_history(study, combinations=None):
    trials = [t for t in ranked_trials(study, combinations) if t.datetime_complete is not None]
    if not trials:
        return None
    trials.sort(key=lambda t: (t.datetime_complete, t.number))
    p = np.array([t.user_attrs.get("p_value", 10.0 ** -t.value) for t in trials], dtype=float)
    start = min(t.datetime_start or t.datetime_complete for t in trials)
    seconds = (trials[-1].datetime_complete - start).total_seconds()
    return p, "combinations finished (in completion order)", duration_text(seconds) if seconds >= 1 else ""


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
