"""The end of a sweep: the counts, the winner, the confirmation, summary.json, the report, and the verdict last."""
from __future__ import annotations

import sys

from inputs.hyperparameters import HYPERPARAMETERS
from ranking.report import write_report
from ranking.summary import write_summary
from ranking.table import print_ranking
from ranking.verdict import headline
from records.view import PerCombination


def finish(sweep) -> int:
    """Print and write the end of `sweep` (sweep/run.py's Sweep); the exit code (1: every combination failed)."""
    ranking = sweep.recorder.ranking
    pruned = 0 if ranking is None else int((ranking["status"] == "pruned").sum())
    completed = 0 if ranking is None else len(ranking) - pruned
    failed = sum(e["outcome"] == "failed" for e in sweep.recorder.errors)
    retried = sum(e["outcome"] == "retried" for e in sweep.recorder.errors)
    print(f"\n{completed} combinations completed, " + (f"{pruned} pruned, " if sweep.settings.pruner else "")
          + f"{failed} failed" + (f" ({retried} retried after a worker died)" if retried else "")
          + f". Results: {sweep.run_dir}")
    if completed + pruned == 0:
        print(f"error: every combination failed; see {sweep.run_dir / 'errors.csv'} for the errors.",
              file=sys.stderr)
        return 1
    best = ranking.iloc[0]
    varying = ", ".join(f"{h}={best[h]:.4g}" if isinstance(best[h], float) else f"{h}={best[h]}"
                        for h in HYPERPARAMETERS if ranking[h].astype(str).nunique() > 1)
    on = "the validation tail" if sweep.settings.selection == "validation" else "the test file"
    print(f"Best combination on {on}: {best['combination']} ({varying}): p-value {best['p_value']:.4g}, "
          f"precision {best['precision']:.3f} vs base rate {best['positive_rate']:.3f} "
          f"({int(best['tp'])} of {int(best['tp'] + best['fp'])} positive predictions right, pooled over "
          f"{int(best['reruns'])} reruns)")
    blocks = sweep.test.blocks
    print(f"Family-wise p-value of the winner: {best['p_value_family_wise']:.3g} (how often the best of these "
          f"{completed} combinations looks at least this good when the labels of {on} are permuted in "
          f"{blocks.count} blocks of {'whole dates' if blocks.by_date else 'rows'}; {sweep.test.orders} "
          f"label orders{', all of them' if sweep.test.exact else ''})")
    print(f"{int(ranking['significant_fdr'].sum())} of {completed} combinations are significant at a "
          f"{sweep.settings.false_discovery_rate:.0%} false discovery rate (q_value in ranking.csv).")
    print_ranking(ranking, top=5)
    confirmation = sweep.recorder.confirmation
    if confirmation is not None:
        print(f"\nRanked on the validation tail of {sweep.settings.train_csv.name}; the top {len(confirmation)} "
              f"retrained on the train file and tested once on {sweep.settings.test_csv.name} "
              f"(confirmation.csv; q_value corrects across these {len(confirmation)}):")
        columns = ["combination", "validation_rank", "p_value_validation", "p_value_test", "q_value",
                   "precision", "tp", "fp"]
        print(confirmation.sort_values("validation_rank")[columns].to_string(index=False))
    if failed:
        print(f"warning: {failed} combinations failed; see {sweep.run_dir / 'errors.csv'}.", file=sys.stderr)
    tested = None if sweep.recorder.confirmation_test is None else \
        (sweep.recorder.confirmation_test, sweep.confirmation_split)
    result = write_summary(sweep.run_dir, sweep.settings, ranking, confirmation, (sweep.test, sweep.data["splits"]),
                           tested, {"completed": completed, "pruned": pruned, "failed": failed}, sweep.timing)
    # the study's trials give the completion order and the importances: a read that rides out an outage
    sweep.ledger.patience.call(lambda: write_report(sweep.run_dir, ranking, PerCombination(sweep.recorder.study)))
    print(f"Report with plots: {sweep.run_dir / 'report.md'}")
    print(f"\n{headline(result)}\n{result.reason}")
    return 0
