"""The run's answer in plain words: does the winner's precision beat luck on data it was not chosen on?

    confirmed      the winner is significant on the test file (p <= SIGNIFICANCE_LEVEL), and was
                   where it was chosen, as the best of all combinations (family-wise p <= the level)
    not confirmed  it was tested there, and one of the two is not
    not tested     it never met data it was not chosen on (CONFIRM_TOP_K = 0, or no result there)

With SELECTION = "validation" the winner is chosen on the validation tail,
retrained and tested once on the test file: one pre-chosen combination, so
its test p-value needs no correction. Its family-wise p-value on the
validation tail must be small too: a winner that was not significant where
it was chosen has nothing to confirm, and its test p-value alone would be
the 1-in-20 luck the level allows (in bench.calibration's 50 markets without
skill, the test p-value alone was at most 0.05 in 6% of them; with both, in
none). With SELECTION = "test"
it is chosen on the test file itself, so only its family-wise p-value (the
best of all combinations under the same permutations) accounts for the choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CONFIRMED, NOT_CONFIRMED, NOT_TESTED = "confirmed", "not confirmed", "not tested"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    combination: str
    level: float
    p_value_test: float | None    # the p-value the verdict is judged on (None: not tested)
    family_wise_p_value: float    # of the winner, where it was ranked
    reason: str                   # one paragraph, in plain words
    judged_on: str = "on the test file"


def decide(ranking: pd.DataFrame, confirmation: pd.DataFrame | None, selection: str, level: float,
           test_name: str) -> Verdict:
    """The verdict on the ranking's winner (its first row)."""
    best = ranking.iloc[0]
    cid, family = str(best["combination"]), float(best["p_value_family_wise"])
    if selection == "test":
        verdict = CONFIRMED if family <= level else NOT_CONFIRMED
        return Verdict(verdict, cid, level, family, family,
                       _reason_ranked_on_test(verdict, best, family, level, len(ranking), test_name),
                       "family-wise, ranked on the test file")
    tested = None if confirmation is None else confirmation.loc[confirmation["combination"] == cid]
    if tested is None or tested.empty:
        return Verdict(NOT_TESTED, cid, level, None, family, _reason_not_tested(family, len(ranking)))
    row = tested.iloc[0]
    p = float(row["p_value_test"])
    verdict = CONFIRMED if p <= level and family <= level else NOT_CONFIRMED
    return Verdict(verdict, cid, level, p, family,
                   _reason_confirmation(verdict, row, p, level, family, len(ranking), test_name))


def _precision_text(row) -> str:
    predicted = int(row["tp"] + row["fp"])
    if predicted == 0:
        return "predicts nothing positive there"
    return (f"has precision {row['tp'] / predicted:.3f} against the base rate {row['positive_rate']:.3f} "
            f"({predicted} positive predictions, pooled over its reruns)")


def _reason_confirmation(verdict, row, p, level, family, count, test_name) -> str:
    head = (f"The winner, combination {row['combination']}, retrained on the train file and tested once on "
            f"{test_name}, {_precision_text(row)}: p = {p:.3g} under the block permutation test")
    chosen = (f" On the validation tail it was the best of {count} combinations, with a family-wise "
              f"p-value of {family:.3g}.")
    if verdict == CONFIRMED:
        return f"{head}, at most the {level:g} level: its precision beats the base rate by more than luck.{chosen}"
    if p <= level:
        return (f"{head}, but on the validation tail it was not significant as the best of {count} combinations "
                f"(family-wise p-value {family:.3g}, above the {level:g} level): with nothing to confirm, one small "
                f"test p-value is the 1-in-20 luck the level allows. Do not trade on it without more evidence.")
    return (f"{head}, above the {level:g} level: on data it was not chosen on, its precision is within what "
            f"luck gives. Do not trade on it without more evidence.{chosen}")


def _reason_ranked_on_test(verdict, row, family, level, count, test_name) -> str:
    head = (f"The winner, combination {row['combination']}, was chosen on {test_name} itself and "
            f"{_precision_text(row)}. As the best of {count} combinations its family-wise p-value is {family:.3g}")
    if verdict == CONFIRMED:
        return f"{head}, at most the {level:g} level: even allowing for the choice, it beats luck."
    return (f"{head}, above the {level:g} level: the best of this many combinations often looks this good by "
            f"luck alone.")


def _reason_not_tested(family, count) -> str:
    return (f"The winner was never tested on data it was not chosen on (CONFIRM_TOP_K = 0, or its confirmation "
            f"did not finish). Its validation p-value is the best of {count} and flattered by that choice; its "
            f"family-wise p-value there is {family:.3g}.")


def headline(verdict: Verdict) -> str:
    """One line for the terminal and the top of report.md."""
    shown = verdict.verdict.upper()
    if verdict.p_value_test is None:
        return f"Verdict: {shown}."
    return f"Verdict: {shown} (p = {verdict.p_value_test:.3g} {verdict.judged_on}; level {verdict.level:g})."
