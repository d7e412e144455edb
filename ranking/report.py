"""A run's report: four PNG plots, a per-value table and report.md, written into the run folder.

    from ranking.report import write_report
    write_report(run_dir, ranking, study)   # -> the paths it wrote

ranking.csv answers "which combination won"; this module answers the
questions a ranking cannot: do the p-values beat chance at all (or is the
winner just the luckiest of many), which hyperparameters and values matter,
whether the precision comes from a handful of predictions or from many, and
whether the sweep was still improving when it stopped.

Every file is written to a temporary name in the run folder and renamed
into place, like the run's other files, so a reader never sees half a file.
The plots are in ranking/plots.py, the per-value tables in ranking/values.py.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from inputs.atomic import atomic_write_text, read_json, write_csv
from ranking.plots import (
    plot_best_over_time,
    plot_p_by_hyperparameter,
    plot_p_value_qq,
    plot_precision_vs_predicted,
    positive_rate,
)
from ranking.values import (
    importances,
    is_missing,
    value_label,
    value_summary,
    varying_hyperparameters,
)

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
    ranked = set(ranking["combination"])  # the study may hold combinations of a wider earlier grid
    plots = {
        "p_values.png": lambda path: plot_p_value_qq(ranking, path),
        "p_by_hyperparameter.png": lambda path: plot_p_by_hyperparameter(ranking, path),
        "precision_vs_predicted.png": lambda path: plot_precision_vs_predicted(ranking, path),
        "best_over_time.png": lambda path: plot_best_over_time(study, path, ranked),
    }
    for name, draw in plots.items():
        draw(run_dir / name)
    values = value_summary(ranking)
    write_csv(values, run_dir / "values.csv")
    shares = importances(study, ranked) if study is not None else None
    atomic_write_text(markdown_report(run_dir, ranking, values, shares, top), run_dir / "report.md")
    return [*(run_dir / name for name in plots), run_dir / "values.csv", run_dir / "report.md"]


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
    rate = read_json(Path(run_dir) / "run.json").get("FALSE_DISCOVERY_RATE")
    return None if rate is None else float(rate)


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
