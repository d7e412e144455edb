"""Compare two finished (or running) sweeps: do they agree on the ranking, and what changed between them?

    python evaluate.py --compare results/config results/overnight

    from ranking.compare import compare_runs, print_comparison
    result = compare_runs(Path("results/config"), Path("results/overnight"))
    print_comparison(result)

Combinations are matched on their `combination` id, which is computed from
the hyperparameter values and so is the same in every run. Rank agreement
is measured on the combinations both runs ranked, after re-ranking that
shared subset 1..n within each run, so that a combination only one run tried
does not shift the other ranks. The two runs' saved config.py copies are
loaded with inputs.settings.load_settings (which only resolves paths, never opens
them) and every setting that differs is listed.
"""
from __future__ import annotations

import math
import os
import runpy
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
from scipy import stats

from inputs.errors import ConfigError
from inputs.hyperparameters import HYPERPARAMETERS
from inputs.settings import SETTING_DEFAULTS, Settings, load_settings

TOP_K = 10
MOVERS = 5
PATH_SETTINGS = ("train_csv", "test_csv", "latest_csv", "results_dir")
# Settings fields that are not settings written in a config file.
NOT_COMPARED = ("config_path", "hyperparameter_values", "warnings")


class CompareError(Exception):
    """A run folder that cannot be compared (missing, or without a readable ranking.csv)."""


@dataclass(frozen=True)
class SettingDifference:
    name: str      # as written in a config file: RERUN_COUNT, TRAIN_CSV, ...
    a: object
    b: object


@dataclass(frozen=True)
class HyperparameterDifference:
    name: str            # a key of hyperparameter_values
    only_a: tuple        # values the A config tries and B does not
    only_b: tuple


@dataclass
class Comparison:
    run_a: Path
    run_b: Path
    combinations_a: int
    combinations_b: int
    shared: int
    only_a: int
    only_b: int
    spearman: float | None          # None when fewer than 3 shared combinations
    spearman_p: float | None
    kendall: float | None
    kendall_p: float | None
    top_k: int                      # min(10, shared)
    top_overlap: int                # how many of A's top k (among shared) are in B's top k
    varying: list                   # hyperparameters whose value differs between combinations
    movers: pd.DataFrame            # combination, *varying, rank_a, rank_b, change, p_value_a, p_value_b
    setting_differences: list = field(default_factory=list)          # [SettingDifference]
    hyperparameter_differences: list = field(default_factory=list)   # [HyperparameterDifference]
    config_errors: dict = field(default_factory=dict)                # "A"/"B" -> message

    @property
    def correlation_defined(self) -> bool:
        return self.spearman is not None

    @property
    def configs_differ(self) -> bool:
        return bool(self.setting_differences or self.hyperparameter_differences)


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    """Compare two run folders written by search.py. Raises CompareError for a missing folder or ranking.csv."""
    run_a, run_b = Path(run_a), Path(run_b)
    a, b = read_ranking(run_a), read_ranking(run_b)
    ids_b = set(b["combination"])
    shared_ids = [c for c in a["combination"] if c in ids_b]  # in A's rank order
    shared = len(shared_ids)

    # re-rank the shared subset 1..n within each run
    ranks_a = _rerank(a, shared_ids)
    ranks_b = _rerank(b, shared_ids)
    joined = pd.DataFrame({"combination": shared_ids, "rank_a": ranks_a.loc[shared_ids].to_numpy(),
                           "rank_b": ranks_b.loc[shared_ids].to_numpy()})

    spearman = spearman_p = kendall = kendall_p = None
    if shared >= 3:
        rho = stats.spearmanr(joined["rank_a"], joined["rank_b"])
        tau = stats.kendalltau(joined["rank_a"], joined["rank_b"])
        spearman, spearman_p = float(rho.statistic), float(rho.pvalue)
        kendall, kendall_p = float(tau.statistic), float(tau.pvalue)

    top_k = min(TOP_K, shared)
    top_a = set(joined.loc[joined["rank_a"] <= top_k, "combination"])
    top_b = set(joined.loc[joined["rank_b"] <= top_k, "combination"])

    varying = _varying(pd.concat([a, b], ignore_index=True))
    movers = _movers(joined, a, b, varying)

    result = Comparison(
        run_a=run_a, run_b=run_b, combinations_a=len(a), combinations_b=len(b), shared=shared,
        only_a=len(a) - shared, only_b=len(b) - shared, spearman=spearman, spearman_p=spearman_p,
        kendall=kendall, kendall_p=kendall_p, top_k=top_k, top_overlap=len(top_a & top_b),
        varying=varying, movers=movers)
    _compare_configs(result)
    return result


def read_ranking(run: Path) -> pd.DataFrame:
    """A run's ranking.csv, sorted by rank, one row per combination."""
    run = Path(run)
    if not run.is_dir():
        raise CompareError(f"{run} does not exist or is not a folder. Pass two run folders written by "
                           f"search.py, such as results/config.")
    path = run / "ranking.csv"
    if not path.is_file():
        raise CompareError(f"{path} does not exist: {run} is not a run folder written by search.py, or its "
                           f"sweep has not ranked anything yet (`python evaluate.py {run}` re-ranks a running "
                           f"sweep from its reruns.csv).")
    try:
        table = pd.read_csv(path, dtype={"combination": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CompareError(f"{path} could not be read as a CSV file ({err}). "
                           f"Run `python evaluate.py {run}` to write it again from reruns.csv.") from None
    missing = [c for c in ("rank", "combination") if c not in table.columns]
    if missing:
        raise CompareError(f"{path} has no {' or '.join(missing)} column, so it is not a ranking written by "
                           f"search.py or evaluate.py.")
    table = table.sort_values("rank", kind="mergesort").drop_duplicates("combination", keep="first")
    return table.reset_index(drop=True)


def _rerank(ranking: pd.DataFrame, ids: list) -> pd.Series:
    """1..n for `ids`, in the order `ranking` (sorted by rank) has them; indexed by combination."""
    keep = ranking[ranking["combination"].isin(set(ids))]
    return pd.Series(range(1, len(keep) + 1), index=keep["combination"].to_numpy())


def _varying(table: pd.DataFrame) -> list:
    return [h for h in HYPERPARAMETERS
            if h in table.columns and table[h].astype(str).nunique(dropna=False) > 1]


def _movers(joined: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, varying: list) -> pd.DataFrame:
    """The MOVERS shared combinations whose rank changed most (ties: better rank in A first).

    A combination whose p-value equals another's in either run is left out:
    where it stands among its equals is the tie-break's doing (precision,
    counts, the id), not a change of evidence.
    """
    moved = joined.assign(change=joined["rank_b"] - joined["rank_a"])
    moved = moved[(moved["change"] != 0) & ~moved["combination"].isin(_tied(a) | _tied(b))]
    moved = moved.assign(size=moved["change"].abs())
    moved = moved.sort_values(["size", "rank_a", "combination"], ascending=[False, True, True],
                              kind="mergesort").head(MOVERS)
    hyper = a.set_index("combination")
    p_a = a.set_index("combination")["p_value"] if "p_value" in a else pd.Series(dtype=float)
    p_b = b.set_index("combination")["p_value"] if "p_value" in b else pd.Series(dtype=float)
    out = pd.DataFrame({"combination": moved["combination"].to_numpy()})
    for h in varying:
        out[h] = hyper.loc[out["combination"], h].to_numpy() if len(out) else []
    out["rank_a"] = moved["rank_a"].to_numpy()
    out["rank_b"] = moved["rank_b"].to_numpy()
    out["change"] = moved["change"].to_numpy()
    out["p_value_a"] = p_a.reindex(out["combination"]).to_numpy()
    out["p_value_b"] = p_b.reindex(out["combination"]).to_numpy()
    return out


def _tied(ranking: pd.DataFrame) -> set:
    """The combinations that share their p-value with another in `ranking`."""
    if "p_value" not in ranking:
        return set()
    return set(ranking.loc[ranking["p_value"].duplicated(keep=False), "combination"])


def _compare_configs(result: Comparison) -> None:
    loaded = {}
    for label, run in (("A", result.run_a), ("B", result.run_b)):
        path = run / "config.py"
        if not path.is_file():
            result.config_errors[label] = f"{path} does not exist, so the settings cannot be compared."
            continue
        try:
            loaded[label] = load_settings(path)
        except ConfigError as err:
            result.config_errors[label] = f"{path} could not be loaded: {err}"
    if len(loaded) < 2:
        return
    a, b = loaded["A"], loaded["B"]
    paths_a, paths_b = _written_paths(a), _written_paths(b)
    result.hyperparameter_differences = _grid_differences(a.hyperparameter_values, b.hyperparameter_values)
    for f in fields(Settings):
        if f.name in NOT_COMPARED:
            continue
        value_a, value_b = getattr(a, f.name), getattr(b, f.name)
        if f.name in PATH_SETTINGS:
            value_a, value_b = paths_a[f.name], paths_b[f.name]
        if value_a != value_b:
            result.setting_differences.append(SettingDifference(f.name.upper(), value_a, value_b))


def _grid_differences(grid_a: dict, grid_b: dict) -> list:
    out = []
    for name in [*HYPERPARAMETERS, *sorted((set(grid_a) | set(grid_b)) - set(HYPERPARAMETERS))]:
        values_a, values_b = grid_a.get(name, []), grid_b.get(name, [])
        keys_a, keys_b = {repr(v) for v in values_a}, {repr(v) for v in values_b}
        only_a = tuple(v for v in values_a if repr(v) not in keys_b)
        only_b = tuple(v for v in values_b if repr(v) not in keys_a)
        if only_a or only_b:
            out.append(HyperparameterDifference(name, only_a, only_b))
    return out


def _written_paths(settings: Settings) -> dict:
    """The path settings (TRAIN_CSV, ...) as the config file wrote them.

    load_settings resolves relative paths against the config file's folder,
    which for a run's saved copy is the run folder, not the folder the sweep
    was started from; two runs that both wrote "example_data/train.csv" read
    the same file, so the text as written is what is compared.
    """
    try:
        namespace = runpy.run_path(str(settings.config_path))
    except Exception:  # it loaded a moment ago; should it fail now, fall back to the resolved paths
        namespace = {}
    out = {}
    for name in PATH_SETTINGS:
        key = name.upper()
        raw = namespace.get(key, SETTING_DEFAULTS.get(key))
        out[name] = Path(raw).as_posix() if isinstance(raw, (str, os.PathLike)) else str(getattr(settings, name))
    return out


# ---------------------------------------------------------------------------------------------------- printing

def print_comparison(result: Comparison, file=sys.stdout) -> None:
    def say(line: str = "") -> None:
        print(line, file=file)

    width = max(len(str(result.run_a)), len(str(result.run_b)))
    say("Comparing two sweeps")
    say(f"  A: {str(result.run_a):<{width}}  {result.combinations_a} combinations")
    say(f"  B: {str(result.run_b):<{width}}  {result.combinations_b} combinations")
    say(f"  {result.shared} shared, {result.only_a} only in A, {result.only_b} only in B")
    say()

    say(f"Rank agreement on the {result.shared} shared combinations (each run re-ranked among them)")
    if result.correlation_defined:
        say(f"  Spearman rho  {result.spearman:6.3f}   (p = {_number(result.spearman_p)})")
        say(f"  Kendall tau   {result.kendall:6.3f}   (p = {_number(result.kendall_p)})")
    else:
        say(f"  Spearman and Kendall correlations are undefined: they need at least 3 shared combinations, "
            f"there {'is' if result.shared == 1 else 'are'} {result.shared}.")
    if result.top_k:
        say(f"  Top-{result.top_k} overlap  {result.top_overlap} of A's top {result.top_k} "
            f"are in B's top {result.top_k}")
    say()

    if result.shared:
        if result.movers.empty:
            say("Biggest rank changes: none, every shared combination has the same rank in both runs.")
        else:
            say(f"Biggest rank changes (rank among the {result.shared} shared; + is worse in B)")
            say(_indent(_movers_table(result.movers, result.varying)))
        say()

    say("Config differences (A -> B)")
    for label, message in result.config_errors.items():
        say(f"  config {label}: {message}")
    if result.config_errors:
        return
    if not result.configs_differ:
        say("  none: both runs used the same settings and hyperparameter values.")
    else:
        rows = []
        for d in result.hyperparameter_differences:
            parts = []
            if d.only_a:
                parts.append("only in A: " + ", ".join(_value(v) for v in d.only_a))
            if d.only_b:
                parts.append("only in B: " + ", ".join(_value(v) for v in d.only_b))
            rows.append((f"hyperparameter_values[{d.name!r}]", "; ".join(parts)))
        for d in result.setting_differences:
            rows.append((d.name, f"{_value(d.a)} -> {_value(d.b)}"))
        name_width = max(len(name) for name, _ in rows)
        for name, text in rows:
            say(f"  {name:<{name_width}}  {text}")


def _movers_table(movers: pd.DataFrame, varying: list) -> str:
    """Text columns left-aligned, numbers right-aligned, two spaces apart."""
    columns = [("combination", [str(c) for c in movers["combination"]], "<")]
    columns += [(h, [_value(v) for v in movers[h]], "<") for h in varying]
    columns += [("rank A -> B", [f"{a} -> {b}" for a, b in zip(movers["rank_a"], movers["rank_b"])], ">"),
                ("change", [f"{c:+d}" for c in movers["change"]], ">"),
                ("p_value A", [_number(p) for p in movers["p_value_a"]], ">"),
                ("p_value B", [_number(p) for p in movers["p_value_b"]], ">")]
    widths = [max(len(name), *(len(cell) for cell in cells)) for name, cells, _ in columns]
    lines = ["  ".join(f"{name:{align}{w}}" for (name, _, align), w in zip(columns, widths))]
    for i in range(len(movers)):
        lines.append("  ".join(f"{cells[i]:{align}{w}}" for (_, cells, align), w in zip(columns, widths)))
    return "\n".join(line.rstrip() for line in lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _number(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}"


def _value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Path):
        return str(v)
    return repr(v) if isinstance(v, str) and v == "" else str(v)
