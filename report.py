"""A run's report: four PNG plots, a per-value table and report.md, written into the run folder.

    from report import write_report
    write_report(run_dir, ranking, study)   # -> the paths it wrote

ranking.csv answers "which combination won"; this module answers the
questions a ranking cannot: do the p-values beat chance at all (or is the
winner just the luckiest of many), which hyperparameters and values matter,
whether the precision comes from a handful of predictions or from many, and
whether the sweep was still improving when it stopped.

Every file is written to a temporary name in the run folder and renamed
into place, like the run's other files, so a reader never sees half a file.
matplotlib and optuna are imported only inside the functions that need
them, so `import report` stays cheap for the sweep's main process.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from results import atomic_write, atomic_write_text, write_csv
from settings import HYPERPARAMETERS

SMALLEST_P = np.finfo(float).tiny  # p-values are clipped to this before -log10, so p = 0 stays finite
DPI = 110
POINT_COLOR = "tab:blue"
REFERENCE_COLOR = "tab:red"

# What report.md says under each plot: how to read it.
PLOTS = {
    "p_values.png": "Each dot is a combination: its block permutation p-value against the p-value expected at its "
                    "rank if no combination had any skill. Dots on the diagonal (inside the grey 95% band) are what "
                    "luck alone gives; dots above the band beat chance. Only a guide: these p-values are discrete "
                    "(none is below the smallest the permutations can give) and share one evaluation set, so they "
                    "rise and fall together; the family-wise p-value is the test of the best.",
    "p_by_hyperparameter.png": "One panel per hyperparameter that varies: each dot is a combination with that "
                               "value, the black bar the value's median. Higher is better (-log10 p = 2 is "
                               "p = 0.01); a value whose dots sit higher across the board is the one to keep.",
    "precision_vs_predicted.png": "Precision against how many rows a combination predicts positive (both pooled "
                                  "over its reruns), coloured by -log10 p. Precision above the red base rate beats "
                                  "guessing; how far above it must be depends on how the predictions cluster in "
                                  "time, which is what the colour (the block permutation p-value) measures. High "
                                  "precision on a handful of predictions is weak evidence.",
    "best_over_time.png": "The best (lowest) p-value found so far, as -log10 p (higher is better), as combinations "
                          "finished; grey dots are the combinations themselves. A curve still climbing at the right "
                          "edge means more combinations could still pay off.",
}


# ------------------------------------------------------------------ entry point
def write_report(run_dir: Path, ranking: pd.DataFrame, study=None, top: int = 10) -> list[Path]:
    """Write the plots, values.csv and report.md into `run_dir`; return the paths written.

    `ranking` is ranking.csv as a DataFrame (read back from disk or as the
    sweep holds it); `study` is the run's Optuna study "sweep", used for the
    completion order and the importances. report.md quotes the verdict from
    summary.json and the confirmation from confirmation.csv, written before.
    """
    run_dir = Path(run_dir)
    plots = {
        "p_values.png": lambda path: plot_p_value_qq(ranking, path),
        "p_by_hyperparameter.png": lambda path: plot_p_by_hyperparameter(ranking, path),
        "precision_vs_predicted.png": lambda path: plot_precision_vs_predicted(ranking, path),
        "best_over_time.png": lambda path: plot_best_over_time(study, path),
    }
    for name, draw in plots.items():
        draw(run_dir / name)
    values = value_summary(ranking)
    write_csv(values, run_dir / "values.csv")
    shares = importances(study) if study is not None else None
    atomic_write_text(markdown_report(run_dir, ranking, values, shares, top), run_dir / "report.md")
    return [*(run_dir / name for name in plots), run_dir / "values.csv", run_dir / "report.md"]


# ------------------------------------------------------------------ tables
def minus_log10(p) -> np.ndarray:
    """-log10 of p-values, the scale every plot uses: 0 is p = 1, 2 is p = 0.01, higher is better."""
    return 0.0 - np.log10(np.clip(np.asarray(p, dtype=float), SMALLEST_P, 1.0))  # 0.0 - 0.0 is +0.0, not -0.0


def is_missing(value) -> bool:
    """A hyperparameter that does not apply to a combination: None, NaN, or '' (an empty CSV cell)."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, (list, tuple)):
        return False
    return value is None or bool(pd.isna(value))


def value_label(value) -> str:
    """One spelling per value: 0.0 and 0 read '0', 5e-05 reads '5e-05', lists stay '[2, 1, 0.5]'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(value.item() if isinstance(value, np.generic) else value)
    return str(value)


def value_labels(ranking: pd.DataFrame, name: str) -> pd.Series:
    """The hyperparameter's value per combination as labels; combinations where it does not apply are dropped."""
    if name not in ranking:
        return pd.Series(dtype=object)
    column = ranking[name]
    try:  # each distinct value labelled once: a big sweep has 10,000s of rows and a few values
        codes, distinct = pd.factorize(column)
    except TypeError:  # unhashable values (lists)
        return column[~column.map(is_missing)].map(value_label)
    labels = np.array([None if is_missing(v) else value_label(v) for v in distinct] + [None], dtype=object)
    mapped = pd.Series(labels[codes], index=column.index, dtype=object)  # code -1 (NaN, None) -> None
    return mapped[mapped.notna()]


def ordered_values(labels: pd.Series) -> list[str]:
    """The distinct values, numerically when they are all numbers, else alphabetically."""
    distinct = list(dict.fromkeys(labels))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def varying_hyperparameters(ranking: pd.DataFrame) -> list[str]:
    """The hyperparameters that take more than one value across the ranked combinations."""
    return [name for name in HYPERPARAMETERS if value_labels(ranking, name).nunique() > 1]


def value_summary(ranking: pd.DataFrame) -> pd.DataFrame:
    """Per value of every varying hyperparameter: how many combinations have it, their median -log10 p and best.

    The best is there because the median is often 0: when most combinations
    predict nothing (p = 1), the median hides the values that did work.
    """
    rows = []
    for name in varying_hyperparameters(ranking):
        labels = value_labels(ranking, name)
        scores = pd.Series(minus_log10(ranking.loc[labels.index, "p_value"]), index=labels.index)
        for value in ordered_values(labels):
            chosen = scores[labels == value]
            rows.append({"hyperparameter": name, "value": value, "combinations": len(chosen),
                         "median_minus_log10_p": float(chosen.median()),
                         "best_minus_log10_p": float(chosen.max())})
    return pd.DataFrame(rows, columns=["hyperparameter", "value", "combinations", "median_minus_log10_p",
                                       "best_minus_log10_p"])


def importances(study) -> pd.Series | None:
    """Optuna's hyperparameter importances (default evaluator), shares summing to 1, largest first.

    None where they mean nothing: fewer than 2 finished combinations, all
    with the same p-value, no hyperparameter that varies, or an evaluator
    that fails. Optuna would instead return equal shares there, which reads
    as an answer. Hyperparameters fixed for the whole run are left out.
    """
    import optuna
    from optuna.trial import TrialState
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if len(trials) < 2 or len({t.value for t in trials}) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for normalize=, "too few trials" notes
            raw = optuna.importance.get_param_importances(study, normalize=False)
    except Exception:  # noqa: BLE001 - any failure only means "no importances in the report"
        return None
    varying = {name for t in trials for name, d in t.distributions.items() if not d.single()}
    shares = pd.Series({name: float(v) for name, v in raw.items() if name in varying}, dtype=float)
    total = shares.sum()
    if shares.empty or not np.isfinite(total) or total <= 0:
        return None
    return (shares / total).sort_values(ascending=False).rename("importance")


# ------------------------------------------------------------------ plots
def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, left: float = 0.75,
               right: float = 0.2, bottom: float = 0.6, top: float = 0.4, wgap: float = 0.35, hgap: float = 0.75,
               **subplot_options):
    """A figure drawn by the Agg backend, outside pyplot, with fixed margins (inches).

    Not using pyplot means no display is ever needed, no global figure list
    to leak into (nothing to close), and safe use from any thread. Fixed
    margins rather than a layout engine: constrained layout measured every
    label on each save, a third of the report's time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
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
    from scipy import special
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
            from matplotlib import ticker
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


def plot_best_over_time(study, path: Path) -> None:
    """The best p-value so far as combinations finished, with each combination's own p-value behind it."""
    p, xlabel, duration = completion_history(study)
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


def completion_history(study) -> tuple[np.ndarray, str, str]:
    """(p-value per finished combination in completion order, x-axis label, how long they took or '').

    The order is the study's completion times (nothing without a study).
    The x-axis counts combinations rather than showing clock time: fused
    trainings finish in bursts, and a resumed run has a gap, both of which
    squash a time axis; "after k combinations" is the question anyway.
    """
    history = study_history(study) if study is not None else None
    return history if history is not None else (np.array([]), "combinations finished", "")


def study_history(study):
    from optuna.trial import TrialState
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.value is not None and t.datetime_complete is not None]
    if not trials:
        return None
    trials.sort(key=lambda t: (t.datetime_complete, t.number))
    p = np.array([t.value for t in trials], dtype=float)
    start = min(t.datetime_start or t.datetime_complete for t in trials)
    seconds = (trials[-1].datetime_complete - start).total_seconds()
    return p, "combinations finished (in completion order)", duration_text(seconds) if seconds >= 1 else ""


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------ report.md
def markdown_report(run_dir: Path, ranking: pd.DataFrame, values: pd.DataFrame, shares: pd.Series | None,
                    top: int) -> str:
    summary = read_json(Path(run_dir) / "summary.json")
    lines = [f"# Sweep report: {Path(run_dir).name}", ""]
    if ranking.empty:
        lines += ["No combination has finished yet.", ""]
    else:
        lines += verdict_section(run_dir, summary)
        lines += [overview(run_dir, ranking), "", best_combination(ranking), ""]
        if "family_wise_p_value" in summary:
            lines += [f"Family-wise p-value of the winner (the best of all combinations under the same label "
                      f"permutations; it accounts for having picked the best): {summary['family_wise_p_value']:.3g}.",
                      ""]
        lines += [f"## Top {min(top, len(ranking))} combinations", "", markdown_table(top_rows(ranking, top)), ""]
        lines += scope_section(summary.get("statistics"))
    lines += ["## Hyperparameter importances", ""]
    if shares is None:
        lines += ["Not available (too few finished combinations, or nothing that varies to explain).", ""]
    else:
        table = pd.DataFrame({"hyperparameter": shares.index, "importance": shares.map("{:.3f}".format).values})
        lines += ["How much each hyperparameter decides whether a combination is among the best (Optuna's "
                  "default importance evaluator on the p-values; shares sum to 1, rough with few "
                  "combinations).", "", markdown_table(table), ""]
    lines += ["## By value", ""]
    if values.empty:
        lines += ["No hyperparameter takes more than one value.", ""]
    else:
        shown = values.assign(median_minus_log10_p=values["median_minus_log10_p"].map("{:.2f}".format),
                              best_minus_log10_p=values["best_minus_log10_p"].map("{:.2f}".format))
        lines += ["Median and best -log10 p of the combinations with each value (higher is better; 1.3 is "
                  "p = 0.05, 0 is p = 1); also in values.csv.", "", markdown_table(shown), ""]
    lines += ["## Plots", ""]
    for name, how_to_read in PLOTS.items():
        lines += [f"![{name[:-4].replace('_', ' ')}]({name})", "", how_to_read, ""]
    return "\n".join(lines)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def verdict_section(run_dir: Path, summary: dict) -> list[str]:
    """The verdict in plain words, with the confirmation on the test file beneath it."""
    if "verdict" not in summary:
        return []
    lines = [f"## Verdict: {summary['verdict']}", "", summary.get("verdict_reason", ""), ""]
    path = Path(run_dir) / "confirmation.csv"
    if path.is_file():
        table = pd.read_csv(path, dtype={"combination": str}).sort_values("validation_rank")
        shown = pd.DataFrame({"validation rank": table["validation_rank"],
                              "combination": table["combination"].map("`{}`".format)})
        for column, spec in (("p_value_validation", ".3g"), ("p_value_test", ".3g"), ("q_value", ".3g"),
                             ("precision", ".3f"), ("tp", "g"), ("fp", "g")):
            shown[column] = table[column].map(lambda v, spec=spec: format_number(v, spec))
        lines += ["The top of the validation ranking, retrained on the train file and tested once on the test "
                  "file (p_value_test: block permutation test on the test file; q_value: Benjamini-Hochberg "
                  "across these rows):", "", markdown_table(shown), ""]
    return lines


def scope_section(statistics: dict | None) -> list[str]:
    """What the p-values account for, what they cannot, and how much independent evidence there is."""
    if not statistics:
        return []
    lines = ["## What the test covers", "",
             f"- **The test.** {statistics['test'][0].upper()}{statistics['test'][1:]}. Blocks: "
             f"{statistics['blocks']}; {statistics['block_count']} blocks, {statistics['label_orders']} label "
             f"orders{' (all of them: an exact test)' if statistics.get('exact') else ''}. The smallest p-value it "
             f"can give is {statistics['smallest_p_value']:.3g}.",
             "- **Corrected for:** the number of combinations (q_value, the family-wise p-value) and the reruns "
             "(their predictions are pooled into one statistic per combination, so reruns that agree with each "
             "other count as the one piece of evidence they are).",
             "- **Not corrected for:** the choices of a model-based sampler or a pruner (which combinations got "
             "tried depended on earlier results on these same rows), and every earlier sweep you ran on this "
             "data: each look makes the best one luckier.",
             f"- **Evidence.** {statistics['evaluated_rows']} evaluated rows"]
    if statistics.get("evaluated_dates") is not None:
        lines[-1] += (f" on {statistics['evaluated_dates']} dates; about {statistics['effective_observations']:g} "
                      f"independent observations (the weekdays spanned over LABEL_HORIZON): rows of one date, and "
                      f"of dates within a horizon, move together.")
    else:
        lines[-1] += f"; about {statistics['effective_observations']:g} independent observations (the blocks)."
    purged = statistics.get("purged_rows") or {}
    if purged:
        at = statistics.get("purge_boundaries", {})
        lines.append("- **Purged** from training (labels reaching into the evaluated period): "
                     + "; ".join(f"{count} rows before {at.get(name, name)} ({name})" for name, count in purged.items())
                     + ".")
    if statistics.get("assumed"):
        lines.append(f"- **Assumed:** {statistics['assumed']}")
    return lines + [""]


def overview(run_dir: Path, ranking: pd.DataFrame) -> str:
    text = plural(len(ranking), "combination")
    if "ranked_on" in ranking and ranking["ranked_on"].notna().any():
        on = ranking["ranked_on"].dropna().iloc[0]
        text += " ranked on the validation tail of the train file" if on == "validation" else " ranked on the test file"
    if "significant_fdr" in ranking:
        count = int(ranking["significant_fdr"].astype(str).str.lower().eq("true").sum())
        rate = false_discovery_rate(run_dir)
        at = f" at a {rate:.0%} false discovery rate" if rate is not None else ""
        text += f"; {count} significant{at} (q_value)"
    return text + "."


def false_discovery_rate(run_dir: Path) -> float | None:
    """FALSE_DISCOVERY_RATE from the run's run.json, if it has one."""
    try:
        return float(json.loads((Path(run_dir) / "run.json").read_text())["FALSE_DISCOVERY_RATE"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def best_combination(ranking: pd.DataFrame) -> str:
    best = ranking.iloc[0]
    settings = ", ".join(f"{name}={value_label(best[name])}" for name in varying_hyperparameters(ranking)
                         if not is_missing(best[name]))
    text = (f"**Best combination: `{best['combination']}`**" + (f" ({settings})" if settings else "")
            + f": p-value {best['p_value']:.3g}, q-value {best['q_value']:.3g}, precision "
            + f"{format_number(best['precision'], '.3f')} vs base rate {format_number(positive_rate(ranking), '.3f')}"
            + f" ({format_number(best['tp'], 'g')} tp, {format_number(best['fp'], 'g')} fp; pooled over "
            + f"{reruns_text(best)}).")
    test_p = best.get("p_value_test", float("nan"))
    if best.get("ranked_on") == "validation" and not is_missing(test_p):
        text += f" Retrained on the train file and tested once on the test file: p-value {float(test_p):.3g}."
    return text


def top_rows(ranking: pd.DataFrame, top: int) -> pd.DataFrame:
    rows = ranking.head(top)
    table = pd.DataFrame({"rank": rows["rank"], "combination": rows["combination"].map("`{}`".format)})
    for name in varying_hyperparameters(ranking):
        table[name] = rows[name].map(lambda v: "" if is_missing(v) else value_label(v))
    for column, spec in (("p_value", ".3g"), ("q_value", ".3g"), ("precision", ".3f"), ("tp", "g"), ("fp", "g")):
        table[column] = rows[column].map(lambda v, spec=spec: format_number(v, spec))
    return table


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def reruns_text(row: pd.Series) -> str:
    count = row.get("reruns", float("nan"))
    return "its reruns" if is_missing(count) else plural(int(count), "rerun")


def format_number(value, spec: str) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else format(value, spec)


def markdown_table(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    header = "| " + " | ".join(map(cell, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])
