"""What each named recipe scored in the repository's benchmarks, read from ``benchmarks/results``.

The Train page shows this table under the Recipe choice so that no one picks a recipe for a win it
does not have; the Effects page quotes the interaction figures of doubles (:func:`interaction_measured`).
Every figure is read from the stored cross-validation JSON (``benchmarks/accuracy.py
--recipe NAME``), never typed in; verdicts follow :func:`lazynet_core.metrics.judge_paired` (a win
needs p < 0.05 and a gain of at least 0.01).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

#: Where the benchmarks write their JSON, in a checkout of the repository.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: Recipe -> suffix of its ``accuracy_<screen><suffix>.json`` (published: the default run, the same
#: configuration; the covariance recipe is k = 256).
RECIPE_FILES = {
    "published": "",
    "covariance": "_control_covariance_k256",
    "anchored": "_anchored",
    "anchored_counts": "_anchored_counts",
    "anchored_folds": "_anchored_folds",
    "anchored_pooled": "_anchored_pooled",
}
SCREENS = ("real", "demo", "hill")
#: Every cell but the recipe's holds the three screens, real · demo · Hill.
COLUMNS = ("recipe", "unseen targets", "vs control cov.", "vs pooled cov.", "held-out cells")


def recipe_scores(results_dir: Path = RESULTS_DIR) -> pd.DataFrame | None:
    """One row per recipe of ``RECIPE_FILES`` with stored results: LazyNet's Δ-Pearson against the
    independent control reference on unseen targets and held-out cells, per screen, and its paired
    verdict against control and pooled covariance on unseen targets.

    Two last rows give control and pooled covariance themselves on unseen targets (from
    ``unseen_targets.json``). Returns ``None`` when no recipe's result file is found (an installed
    package without the benchmarks); a screen without a file, or a file without a comparison (runs
    stored before pooled covariance existed), shows "–".
    """
    rows = []
    for recipe, suffix in RECIPE_FILES.items():
        runs = {screen: _read(results_dir / f"accuracy_{screen}{suffix}.json") for screen in SCREENS}
        if not any(runs.values()):
            continue
        rows.append({
            COLUMNS[0]: recipe,
            COLUMNS[1]: _joined(_mean(run, "held_out_perturbations") for run in runs.values()),
            COLUMNS[2]: _joined(_verdict(run, "control_covariance") for run in runs.values()),
            COLUMNS[3]: _joined(_verdict(run, "pooled_covariance") for run in runs.values()),
            COLUMNS[4]: _joined(_mean(run, "held_out_cells") for run in runs.values()),
        })
    if rows:
        rows += _baseline_rows(_read(results_dir / "unseen_targets.json"))
    return pd.DataFrame(rows, columns=list(COLUMNS)).set_index("recipe") if rows else None


def _baseline_rows(unseen: dict[str, Any] | None) -> list[dict[str, str]]:
    """Control and pooled covariance on unseen targets, same folds and seeds
    (``benchmarks/unseen_targets.py``), so the recipes stand next to the bars they are judged by."""
    rows = []
    for baseline in ("control_covariance", "pooled_covariance"):
        means = []
        for screen in SCREENS:
            block = ((unseen or {}).get("screens") or {}).get(screen) or {}
            hit = [r["mean"] for r in block.get("records", []) if r.get("mean") is not None
                   and (r.get("method"), r.get("metric")) == (baseline, "pearson_delta")]
            means.append(f"{hit[0]:.3f}".replace("-", "−") if hit else "–")
        if any(m != "–" for m in means):
            rows.append({COLUMNS[0]: f"baseline: {baseline.replace('_', ' ')}", COLUMNS[1]: _joined(means),
                         COLUMNS[2]: "", COLUMNS[3]: "", COLUMNS[4]: ""})
    return rows


def pooling_measured(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, float]] | None:
    """Per benchmark screen: its training controls' split-half slope agreement and what pooling the
    perturbed cells gained over control covariance on unseen targets (``unseen_targets.json``).

    Returns
    -------
    dict or None
        Screen -> ``{"r": controls_vs_controls, "gain": pooled − control covariance Δ-Pearson,
        "p": paired Wilcoxon p}`` for the screens with both figures; ``None`` where none has them
        (an installed package without the benchmarks, or an older file).
    """
    screens = ((_read(results_dir / "unseen_targets.json") or {}).get("screens") or {})
    out = {}
    for screen in SCREENS:
        block = screens.get(screen) or {}
        r = (block.get("slope_agreement") or {}).get("controls_vs_controls")
        hit = [row for row in block.get("paired", [])
               if (row.get("model"), row.get("baseline")) == ("pooled_covariance", "control_covariance")]
        if r is not None and hit and hit[0].get("mean_diff") is not None:
            row = hit[0]
            out[screen] = {"r": float(r), "gain": float(row["mean_diff"]), "p": float(row["p_wilcoxon"])}
    return out or None


#: The stored paired comparison of the default recipe with its strongest single-perturbation rival.
DEFAULT_COMPARISON = "recipes_anchored_vs_published.json"
_SET_WORDS = {"held_out_cells": "held-out cells", "held_out_perturbations": "unseen targets"}


def default_recipe_sentence(*, results_dir: Path = RESULTS_DIR) -> str | None:
    """Why ``published`` is the default, in one sentence read from :data:`DEFAULT_COMPARISON`.

    A default changes only where a recipe wins on at least two screens, one of them the real screen
    (issue 11); a win is p < 0.05 and a gain of at least 0.01 (:func:`lazynet_core.metrics.judge_paired`).

    Parameters
    ----------
    results_dir
        Folder of the stored benchmark JSON.

    Returns
    -------
    str or None
        Markdown: the rival's paired difference from ``published`` on the real screen's
        single-perturbation sets, the range on the synthetic screens, where it is significantly
        ahead or behind, and what the rule then says. None where the file, its real-screen rows or
        ``published`` as its first recipe are missing.
    """
    stored = _read(results_dir / DEFAULT_COMPARISON) or {}
    first, second = stored.get("first"), stored.get("second")
    rows = [r for r in stored.get("rows", []) if r.get("set") in _SET_WORDS and r.get("diff") is not None
            and r.get("p_wilcoxon") is not None]
    real = [r for r in rows if r.get("screen") == "real"]
    if first != "published" or not (second and real):
        return None

    def num(value: float, spec: str) -> str:
        return format(value, spec).replace("-", "−")

    def part(row: dict[str, Any]) -> str:
        return (f"{_SET_WORDS[row['set']]} {num(row['diff'], '+.3f')}, p = {num(row['p_wilcoxon'], '.2g')}, "
                f"better on {row.get('wins', '?')}/{row.get('n', '?')}")

    names = {"real": "real", "demo": "demo", "hill": "Hill"}

    def screens(keep) -> list[str]:
        return sorted({names.get(r["screen"], r["screen"]) for r in rows
                       if r["p_wilcoxon"] < 0.05 and keep(r)})

    ahead, behind = screens(lambda r: r["diff"] >= 0.01), screens(lambda r: r["diff"] < 0)
    synthetic = [r["diff"] for r in rows if r.get("screen") != "real"]
    on_real = "; ".join(part(r) for r in real)
    rest = ((f"; on the synthetic screens it differs by {num(min(synthetic), '+.3f')} to "
             f"{num(max(synthetic), '+.3f')}" if synthetic else "")
            + (f"; significantly ahead on the {' and '.join(ahead)} screens" if ahead else "")
            + (f"; significantly behind on the {' and '.join(behind)} screens" if behind else ""))
    head = "**published** (the paper's method) is the default"
    rule = "a default changes only where a recipe wins on two screens, one of them the real one"
    if "real" in ahead and len(ahead) >= 2:
        return f"{head}, but by the rule ({rule}) {second} should now be: on the real screen {on_real}{rest}."
    if "real" in ahead:
        return f"{head} ({rule}); {second} wins on the real screen only ({on_real}){rest}."
    tail = f" For a prediction that responds to an unseen target, choose {second}"
    equal = _unseen_diffs(second, "control_covariance", results_dir)
    if len(equal) == len(SCREENS) and max(abs(d) for d in equal) < 0.01:  # every screen measured
        gap = max(abs(d) for d in equal)
        level = (f"the same to three decimals on all {len(equal)} screens" if gap < 0.0005
                 else f"within {gap:.3f} on {len(equal)} screens")
        tail += (f", knowing that there it scores what control covariance scores ({level}): the response "
                 "is the baseline it starts from, not more")
    return (f"{head} ({rule}); {second} is not significantly ahead of it on the real screen "
            f"({on_real}){rest}.{tail}.")


def _unseen_diffs(recipe: str, baseline: str, results_dir: Path) -> list[float]:
    """``recipe`` − ``baseline`` on unseen targets, one per screen with a stored comparison."""
    suffix = RECIPE_FILES.get(recipe)
    if suffix is None:
        return []
    rows = [_unseen_row(_read(results_dir / f"accuracy_{screen}{suffix}.json"), baseline)
            for screen in SCREENS]
    return [float(row["mean_diff"]) for row in rows if row is not None]


def _joined(cells: Any) -> str:
    """The screens' cells joined by " · ", or a single "–" where none was measured."""
    cells = list(cells)
    return "–" if all(c == "–" for c in cells) else " · ".join(cells)


def _read(path: Path) -> dict[str, Any] | None:
    """A stored result, or None where it is missing or unreadable (the table then shows "–")."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean(run: dict[str, Any] | None, set_name: str) -> str:
    """LazyNet's mean Δ-Pearson on ``set_name`` (independent reference), or "–"."""
    for record in (run or {}).get("records", []):
        if (record.get("set"), record.get("reference"), record.get("method"), record.get("metric")) == (
                set_name, "independent", "lazynet", "pearson_delta") and record.get("mean") is not None:
            return f"{record['mean']:.3f}".replace("-", "−")
    return "–"


def _unseen_row(run: dict[str, Any] | None, baseline: str) -> dict[str, Any] | None:
    """The stored paired row of LazyNet against ``baseline`` on unseen targets (independent reference)."""
    for row in (run or {}).get("paired", []):
        if (row.get("set"), row.get("reference"), row.get("baseline")) == (
                "held_out_perturbations", "independent", baseline) and row.get("mean_diff") is not None:
            return row
    return None


def _verdict(run: dict[str, Any] | None, baseline: str) -> str:
    """``"+0.080 ahead"``: LazyNet minus ``baseline`` on unseen targets and the verdict, or "–"."""
    from lazynet_core.metrics import judge_paired

    row = _unseen_row(run, baseline)
    if row is None:
        return "–"
    verdict = judge_paired({"sd_diff": None, **row}, baseline=baseline)["verdict"]
    return f"{row['mean_diff']:+.3f} {verdict}".replace("-", "−")


#: The redundant-hub design of ``combinations.py`` the Effects page quotes (10,000 cells, half held out).
INTERACTION_DESIGN = "_redundant_10000cells_tf0.5"


def interaction_measured(results_dir: Path = RESULTS_DIR) -> dict[str, float] | None:
    """What the benchmarks measured for the interaction of doubles on the Hill screens with planted
    redundant regulators: the published and ``anchored_counts`` recipes' interaction r, their nulls,
    the count-space sum of the arms, the set ceiling, and the planted dynamics as an oracle
    (``combinations_*{INTERACTION_DESIGN}.json``, ``interaction_headroom.json``).

    Returns
    -------
    dict or None
        Keys ``published``, ``published_null`` (its log-space dose-only null), ``counts``,
        ``counts_log_null``, ``counts_null`` (``anchored_counts`` and its log- and count-space nulls),
        ``additive_counts``, ``ceiling``, ``oracle`` and ``oracle_counts_null``; ``None`` when a file
        or figure is missing (an installed package without the benchmarks). Where the AND-gate hubs
        were run too (``--gate and``), also ``and_published``, ``and_published_null``, ``and_oracle``,
        ``and_oracle_null`` (the oracle's log-space null) and ``and_multiplicative`` (the arms' folds
        multiplied, no model), and ``and_folds`` with ``and_folds_null`` (its folds-multiplied dose-only
        null) where the ``anchored_folds`` recipe was run there. Where the backup (noisy-OR) hubs were
        run (``interaction_headroom.py`` and ``trained_doubles.py --gate backup --recipe anchored_counts``),
        also ``backup_oracle``, ``backup_oracle_counts_null``, ``backup_additive_counts`` (the headroom
        run's), ``backup_counts`` and ``backup_counts_null`` (``anchored_counts`` and its count-space null,
        singles only) and ``backup_trained_excess`` (its excess over that null with the other doubles
        trained).
    """
    r = _pearson_interaction

    def interaction(recipe: str, design: str = INTERACTION_DESIGN) -> dict[str, Any] | None:
        stored = _read(results_dir / f"combinations_{recipe}{design}.json") or {}
        return stored.get("interaction")

    def headroom_of(gate: str) -> dict[str, Any] | None:
        return next((row["summary"] for row in headroom.get("results", []) if row.get("cells") == 10000
                     and row.get("redundant") and row.get("gate", "or") == gate), None)

    published, counts = interaction("published"), interaction("anchored_counts")
    headroom = _read(results_dir / "interaction_headroom.json") or {}
    oracle = headroom_of("or")
    if not (published and counts and oracle):
        return None
    out = {
        "published": r(published, "lazynet"), "published_null": r(published, "dose_only"),
        "counts": r(counts, "lazynet"), "counts_log_null": r(counts, "dose_only"),
        "counts_null": r(counts, "dose_only_counts"), "additive_counts": r(counts, "additive_counts"),
        "ceiling": (oracle.get("planted_oracle") or {}).get("ceiling", {}).get("mean"),
        "oracle": r(oracle, "planted_oracle"), "oracle_counts_null": r(oracle, "dose_only_counts"),
    }
    if any(v is None for v in out.values()):
        return None
    and_published = interaction("published", "_redundant_and_10000cells_tf0.5")
    and_oracle = headroom_of("and")
    if and_published and and_oracle:
        more = {"and_published": r(and_published, "lazynet"),
                "and_published_null": r(and_published, "dose_only"),
                "and_oracle": r(and_oracle, "planted_oracle"), "and_oracle_null": r(and_oracle, "dose_only"),
                "and_multiplicative": r(and_oracle, "multiplicative_counts")}
        out.update(more if all(v is not None for v in more.values()) else {})
        and_folds = interaction("anchored_folds", "_redundant_and_10000cells_tf0.5") or {}
        folds = {"and_folds": r(and_folds, "lazynet"), "and_folds_null": r(and_folds, "dose_only_folds")}
        if "and_oracle" in out and all(v is not None for v in folds.values()):
            out.update(folds)
    trained = _read(results_dir / "trained_doubles_backup_anchored_counts.json")
    out.update(_backup_measured(headroom_of("backup"), trained))
    return {k: float(v) for k, v in out.items()}


def _pearson_interaction(block: dict[str, Any], name: str) -> float | None:
    """The mean interaction r of method ``name`` in a benchmark's interaction block, or None."""
    return ((block.get(name) or {}).get("pearson_interaction") or {}).get("mean")


def _backup_measured(oracle: dict[str, Any] | None, trained: dict[str, Any] | None) -> dict[str, float]:
    """The backup-hub figures of :func:`interaction_measured`, or nothing where either run is missing."""
    if not (oracle and trained):
        return {}
    arms = (trained.get("summary") or {}).get("per_arm") or {}
    none, half = arms.get("none_trained") or {}, arms.get("half_trained") or {}
    figures = {
        "backup_oracle": _pearson_interaction(oracle, "planted_oracle"),
        "backup_oracle_counts_null": _pearson_interaction(oracle, "dose_only_counts"),
        "backup_additive_counts": _pearson_interaction(oracle, "additive_counts"),
        "backup_counts": none.get("lazynet"), "backup_counts_null": none.get("dose_only_counts"),
        "backup_trained_excess": half.get("lazynet_minus_own_null"),
    }
    return figures if all(v is not None for v in figures.values()) else {}
