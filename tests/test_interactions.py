"""Known answers for the interaction of double perturbations (``lazynet_core.interactions``) and for
the Hill screen whose doubles truly interact (``hill_screen(redundant=True)``; issue 11, goal 2)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from lazynet_core import datasets
from lazynet_core.config import PairConfig
from lazynet_core.data import read_screen
from lazynet_core.interactions import (
    double_arms,
    double_interaction,
    interaction_frame,
    interaction_scores,
    interaction_summary,
)
from lazynet_core.pairs import make_pairs


def test_interaction_scores_by_hand():
    observed = np.array([1.0, -2.0, 0.0, 0.5])
    half = interaction_scores(observed / 2, observed)
    assert_allclose([half["pearson_interaction"], half["interaction_explained"]], [1.0, 0.75])
    none = interaction_scores(np.zeros(4), observed)
    assert np.isnan(none["pearson_interaction"]) and none["interaction_explained"] == 0.0
    wrong = interaction_scores(-observed, observed)
    assert_allclose([wrong["pearson_interaction"], wrong["interaction_explained"]], [-1.0, -3.0])


@pytest.fixture(scope="module")
def redundant_pairs():
    raw = datasets.hill_screen(n_genes=40, n_cells=2400, seed=3, n_combinations=3, redundant=True)
    adata = read_screen(raw)
    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=doubles, test_fraction=0.5, seed=0))
    return raw, pairs


def test_redundant_screen_wires_each_double_to_a_hub(redundant_pairs):
    raw, _ = redundant_pairs
    hubs = raw.uns["synthetic"]["redundant_hubs"].split(",")
    doubles = sorted({p for p in raw.obs["perturbation"].unique() if "+" in p})
    assert len(hubs) == len(doubles) == 3
    planted = raw.uns["planted_network"]
    src, tgt, w = (np.asarray(planted[k]) for k in ("source", "target", "weight"))
    parents_of = {h: sorted(src[tgt == h]) for h in hubs}
    assert sorted(parents_of.values()) == sorted(sorted(d.split("+")) for d in doubles)  # the targets only
    assert all(w[tgt == h].min() > 0 for h in hubs)  # both activate
    assert not any(h in {g for d in doubles for g in d.split("+")} for h in hubs)  # a hub is never a target


def test_redundant_doubles_are_synergistic_on_the_hub(redundant_pairs):
    # An OR gate: each arm alone leaves the hub half on, the double shuts it off, so in log space the
    # double moves the hub further than the sum of its arms (negative interaction), seen on cells
    # that never reached training.
    raw, pairs = redundant_pairs
    hubs = raw.uns["synthetic"]["redundant_hubs"].split(",")
    labels = [str(p) for p in pairs.perturbations]
    ref = pairs.control_mean("reference").astype(np.float64)
    gene = {g: i for i, g in enumerate(pairs.genes)}
    found = {}
    for p, arms in double_arms(pairs):
        means = [pairs.pert_mean(s, "test").astype(np.float64) - ref for s in (p, *arms)]
        interaction = means[0] - means[1] - means[2]
        hub_values = {h: interaction[gene[h]] for h in hubs}
        found[labels[p]] = min(hub_values.values())
    assert len(found) == 3
    assert all(v < -0.15 for v in found.values()), found


def _observed(frame):
    """The ``observed`` rows (split-half r, reliability, ceiling) as one row per double."""
    return frame[frame["method"] == "observed"].pivot(index="perturbation", columns="metric", values="value")


def _lookup_predictor(pairs, table):
    """Predicts the post state whose pre-state matches a row of ``table`` (pre, post) exactly."""

    def predict(x):
        out = np.empty_like(x)
        for i, row in enumerate(x):
            match = [post for pre, post in table if np.array_equal(pre, row)]
            assert match, "unexpected pre-state"
            out[i] = match[0]
        return out

    return predict


def test_an_oracle_of_the_held_out_cells_scores_one_and_identity_scores_zero(redundant_pairs):
    _, pairs = redundant_pairs
    ref = pairs.control_mean("reference")
    base = pairs.control_mean("train").astype(np.float32)
    table = [(base, ref.astype(np.float32))]
    for p, arms in double_arms(pairs):
        for s in (p, *arms):
            table.append((pairs.pre_state(s, "test").astype(np.float32), pairs.pert_mean(s, "test")))
        for a in arms:  # the dose-only null's inputs (each arm alone at the double's level): unchanged
            alone = base.copy()
            alone[pairs.pert_targets[a]] = pairs.pre_state(p, "test")[pairs.pert_targets[a]]
            table.append((alone, alone))
    frame = interaction_frame(pairs, _lookup_predictor(pairs, table), name="oracle")
    oracle = frame[frame["method"] == "oracle"].pivot(index="perturbation", columns="metric", values="value")
    assert len(oracle) == 3
    assert_allclose(oracle["pearson_interaction"], 1.0, atol=1e-6)
    assert_allclose(oracle["interaction_explained"], 1.0, atol=1e-6)

    ident = interaction_frame(pairs, lambda x: x.copy(), name="identity", ceiling=False)
    ident = ident[ident["method"] == "identity"].pivot(index="perturbation", columns="metric", values="value")
    assert ident["pearson_interaction"].isna().all()  # predicts no interaction: r undefined, as additive
    assert_allclose(ident["interaction_explained"], 0.0, atol=1e-6)
    additive = frame[(frame["method"] == "additive") & (frame["metric"] == "interaction_explained")]
    assert_allclose(additive["value"], 0.0, atol=1e-9)
    observed = _observed(frame)
    assert len(observed) == 3 and (observed["ceiling"].dropna() <= 1).all()
    assert_allclose(observed["ceiling"] ** 2, observed["reliability"])  # all three reproduce here


def test_a_sets_interaction_ceiling_is_not_the_mean_of_the_doubles_that_reproduce():
    # Standard Hill doubles barely interact: two halves of the cells agree on a double's interaction no
    # more often than chance, so the per-double ceiling is defined on about half of them and averages
    # ~0.34 there (as on pure noise), while the set's ceiling, from the mean split-half r, is near 0
    raw = datasets.hill_screen(n_genes=120, n_cells=5000, seed=0, n_combinations=20)
    adata = read_screen(raw)
    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=doubles, seed=0))
    frame = interaction_frame(pairs, lambda x: x.copy(), name="identity")
    observed = _observed(frame)
    assert len(observed) == 20
    assert observed["ceiling"].notna().sum() < 16 and observed["ceiling"].mean() > 0.25
    summary = interaction_summary(frame, model="identity")
    assert summary["ceiling"]["n"] == 20 and summary["ceiling"]["mean"] < 0.2, summary["ceiling"]


def test_a_linear_model_scores_its_dose_differences_and_exactly_its_dose_only_null(redundant_pairs):
    # F(x) = x + M (x - base) has no interaction, yet its I is not 0: the knock-downs differ between
    # the double's cells and the arms'. The dose-only null reproduces that I exactly; a product term
    # of the two targets (a true interaction) is what sets a model apart from it.
    _, pairs = redundant_pairs
    base = pairs.control_mean("train").astype(np.float64)
    M = np.random.default_rng(0).normal(0.0, 0.3, (pairs.n_genes, pairs.n_genes))

    def linear(x):
        return (x + (x - base) @ M.T).astype(np.float32)

    p, arms = double_arms(pairs)[0]
    genes = double_interaction(pairs, linear, p, arms=arms)
    rest = genes[~genes["is_target"]]
    assert np.abs(rest["predicted"]).max() > 1e-3  # the dose differences alone move I
    assert_allclose(rest["dose_only"], rest["predicted"], atol=1e-4)

    a, b = (pairs.pert_targets[arm][0] for arm in arms)
    hub = int(np.flatnonzero(~genes["is_target"].to_numpy())[0])

    def interacting(x):
        out = linear(x).astype(np.float64)
        out[:, hub] += 2.0 * (x[:, a] - base[a]) * (x[:, b] - base[b])
        return out.astype(np.float32)

    inter = double_interaction(pairs, interacting, p, arms=arms)
    pre = pairs.pre_state(p, "test")
    expected = 2.0 * (pre[a] - base[a]) * (pre[b] - base[b])
    assert abs(expected) > 1e-3
    assert_allclose(inter["predicted"][hub] - inter["dose_only"][hub], expected, rtol=1e-3)
    frame = interaction_frame(pairs, linear, name="linear", ceiling=False)
    assert set(frame["method"]) >= {"linear", "additive", "dose_only"}
    mine = frame[(frame["method"] == "linear") & (frame["metric"] == "pearson_interaction")]
    null = frame[(frame["method"] == "dose_only") & (frame["metric"] == "pearson_interaction")]
    assert_allclose(mine["value"].to_numpy(), null["value"].to_numpy(), atol=1e-3)


def test_a_count_additive_model_scores_exactly_its_count_space_dose_only_null(redundant_pairs):
    # expm1 F(x) = expm1(base) + (x − base) B: effects add in expression, no interaction beyond that
    # form. Its I is far from the log-space null but equals the count-space null gene by gene.
    _, pairs = redundant_pairs
    base = pairs.control_mean("train").astype(np.float64)
    B = np.abs(np.random.default_rng(1).normal(0.0, 0.5, (pairs.n_genes, pairs.n_genes)))

    def count_additive(x):
        counts = np.expm1(base) + (x.astype(np.float64) - base) @ B.T
        return np.log1p(np.maximum(counts, 0.0)).astype(np.float32)

    p, arms = double_arms(pairs)[0]
    genes = double_interaction(pairs, count_additive, p, arms=arms)
    rest = genes[~genes["is_target"]]
    assert np.abs(rest["predicted"] - rest["dose_only"]).max() > 1e-2  # not additive in log space
    assert_allclose(rest["dose_only_counts"], rest["predicted"], atol=1e-4)
    # a log-additive model is, in turn, apart from its count-space null
    M = np.random.default_rng(0).normal(0.0, 0.3, (pairs.n_genes, pairs.n_genes))
    linear = double_interaction(pairs, lambda x: (x + (x - base) @ M.T).astype(np.float32), p, arms=arms)
    lin = linear[~linear["is_target"]]
    assert_allclose(lin["dose_only"], lin["predicted"], atol=1e-4)
    assert np.abs(lin["predicted"] - lin["dose_only_counts"]).max() > 1e-2
    frame = interaction_frame(pairs, count_additive, name="counts", ceiling=False)
    assert "dose_only_counts" in set(frame["method"])


def test_a_double_whose_arm_has_no_held_out_cells_is_not_scored(redundant_pairs):
    _, pairs = redundant_pairs
    arms = double_arms(pairs)
    first_arm = arms[0][1][0]
    role = pairs.cell_role.copy()
    role[pairs.cell_pert == first_arm] = "train"
    assert len(double_arms(dataclasses.replace(pairs, cell_role=role, _cache={}))) == len(arms) - 1


def test_interaction_summary_tests_against_zero():
    rows = []
    for i, v in enumerate([0.2, 0.3, 0.1, 0.4, 0.25, 0.35, -0.05]):
        rows += [("combinations", "independent", "lazynet", f"d{i}", "pearson_interaction", v),
                 ("combinations", "independent", "lazynet", f"d{i}", "interaction_explained", v / 10),
                 ("combinations", "independent", "observed", f"d{i}", "split_half_r", [0.25, -0.1][i % 2])]
    frame = pd.DataFrame(rows, columns=["set", "reference", "method", "perturbation", "metric", "value"])
    out = interaction_summary(frame)
    r = out["pearson_interaction"]
    assert r["n"] == 7 and r["above_zero"] == 6
    assert_allclose(r["mean"], np.mean([0.2, 0.3, 0.1, 0.4, 0.25, 0.35, -0.05]))
    assert r["p_wilcoxon_vs_zero"] < 0.05
    assert out["ceiling"]["n"] == 7  # the halves' r pooled, the negative ones kept, corrected once
    r = (4 * 0.25 - 3 * 0.1) / 7
    assert_allclose(out["ceiling"]["mean"], np.sqrt(2 * r / (1 + r)))


def test_redundant_needs_doubles_and_leaves_other_screens_alone():
    with pytest.raises(ValueError, match="n_combinations"):
        datasets.hill_screen(n_genes=30, n_cells=400, redundant=True)
    plain = datasets.hill_screen(n_genes=30, n_cells=600, seed=1, n_combinations=2)
    again = datasets.hill_screen(n_genes=30, n_cells=600, seed=1, n_combinations=2, redundant=False)
    assert (plain.X != again.X).nnz == 0 and "redundant_hubs" not in plain.uns["synthetic"]
    X = plain.X.tocsr()  # pinned from the screen before redundant existed (commit 20b6a01)
    digest = hashlib.sha1()
    for part in (X.indptr.astype("int32"), X.indices.astype("int32"), X.data.astype("float32")):
        digest.update(part.tobytes())
    assert digest.hexdigest() == "3f73f0d673a9883c4a30bd62b43e306ce5ac6171"
    rewired = datasets.hill_screen(n_genes=30, n_cells=600, seed=1, n_combinations=2, redundant=True)
    assert (plain.X != rewired.X).nnz > 0


def test_additive_counts_by_hand():
    from lazynet_core.metrics import additive_counts_post

    base = np.log1p(np.array([4.0, 4.0, 1.0]))
    halves = [np.log1p(np.array([2.0, 8.0, 1.0])), np.log1p(np.array([2.0, 4.0, 3.0]))]
    # gene 0: each arm halves 4 -> 2, the two together shut it off (an OR gate); gene 1: only A moves;
    # gene 2: only B moves
    assert_allclose(additive_counts_post(halves, base), np.log1p([0.0, 8.0, 3.0]), atol=1e-12)
    over = [np.log1p(np.array([0.5, 4.0, 1.0]))] * 2  # the sum would go below no expression: clipped
    assert_allclose(additive_counts_post(over, base)[0], 0.0, atol=1e-12)


def test_multiplicative_counts_by_hand():
    from lazynet_core.metrics import additive_counts_post, multiplicative_counts_post

    base = np.log1p(np.array([4.0, 4.0, 1.0, 0.0]))
    arms = [np.log1p(np.array([2.0, 8.0, 1.0, 0.0])), np.log1p(np.array([2.0, 4.0, 3.0, 2.0]))]
    # gene 0: each arm halves 4 -> 2, the two together a quarter (an AND gate's product); genes 1, 2:
    # one arm moves each; gene 3 is not expressed at base: no fold, it stays at 0
    assert_allclose(multiplicative_counts_post(arms, base), np.log1p([1.0, 8.0, 3.0, 0.0]), atol=1e-12)
    assert_allclose(additive_counts_post(arms, base)[0], 0.0, atol=1e-12)  # the OR gate's sum shuts it
    # on a gene of many counts log1p is log: the folds multiplied are the log changes added
    high = np.log1p(np.array([1e6]))
    folds = [np.log1p(np.array([2e5])), np.log1p(np.array([5e5]))]
    assert_allclose(multiplicative_counts_post(folds, high), high + sum(f - high for f in folds), atol=1e-5)
    # on a gene of few counts the pseudo-count makes log1p addition shut it more than the product
    low, halves = np.log1p(np.array([0.5])), [np.log1p(np.array([0.25]))] * 2
    assert multiplicative_counts_post(halves, low)[0] > low[0] + 2 * (halves[0][0] - low[0]) + 0.05


@pytest.mark.parametrize("method", ["additive_counts", "multiplicative_counts"])
def test_count_space_baselines_use_the_arms_training_means(redundant_pairs, method):
    from lazynet_core import metrics
    from lazynet_core.interactions import interaction_frame

    _, pairs = redundant_pairs
    combine = getattr(metrics, f"{method}_post")
    evals = pairs.evaluation_perturbations("test")
    preds = metrics.baseline_predictions(pairs)[method]
    base = pairs.control_mean("train").astype(np.float64)
    arms = dict(double_arms(pairs))
    checked = 0
    for row, p in enumerate(evals):
        if p not in arms:
            assert len(pairs.pert_targets[p]) > 1 or np.isnan(preds[row]).all()  # singles: not defined
            continue
        keep = np.setdiff1d(np.arange(pairs.n_genes), pairs.pert_targets[p])
        expected = combine([pairs.pert_mean(a, "train") for a in arms[p]], base)
        assert_allclose(preds[row, keep], expected[keep], rtol=1e-6)
        checked += 1
    assert checked == 3
    frame = interaction_frame(pairs, lambda x: x, ceiling=False)
    assert frame[frame["method"] == method]["perturbation"].nunique() == 3


def test_an_and_gates_oracle_double_is_nearly_its_arms_folds_multiplied():
    # hub = basal + 6 · hill(A) · hill(B): but for the small basal production, the double's fold of
    # the hub is the product of its arms' folds, which multiplicative_counts predicts from the arms
    # alone and log1p addition does not (the hub has few counts: the pseudo-count matters)
    from lazynet_core.metrics import multiplicative_counts_post

    raw = datasets.hill_screen(n_genes=40, n_cells=2400, seed=3, n_combinations=3, redundant=True, gate="and")
    genes = np.asarray(raw.uns["planted_hill"]["genes"]).astype(str)
    base = np.log1p(np.full(len(genes), 0.8))
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=genes)
    gene = {g: i for i, g in enumerate(genes)}
    planted = raw.uns["planted_network"]
    src, tgt = np.asarray(planted["source"]).astype(str), np.asarray(planted["target"]).astype(str)
    for hub in raw.uns["synthetic"]["redundant_hubs"].split(","):
        a, b = sorted(src[tgt == hub])
        states = []
        for targets in ((a,), (b,), (a, b)):
            pre = base.astype(np.float32).copy()
            for t in targets:
                pre[gene[t]] = np.log1p(0.3 * np.expm1(base[gene[t]]))
            states.append(oracle(pre).astype(np.float64))
        h = gene[hub]
        product = multiplicative_counts_post(states[:2], base)[h]
        log_sum = base[h] + (states[0][h] - base[h]) + (states[1][h] - base[h])
        assert abs(states[2][h] - product) < 0.02
        assert states[2][h] - log_sum > 0.05


def test_shared_hubs_give_each_triad_one_and_hub_of_all_three_targets():
    # shared_hubs: triads (A, B, C) of disjoint CRISPRi targets give A+B, A+C, B+C, and one hub needs all
    # three: basal + 9 · hill(A) · hill(B) · hill(C), each term 0.5 at control, so with all three clamped
    # at folds f the hub's fold is (basal + 9 Π f²/(f² + 1)) / (basal + 9/8), whatever lies upstream
    raw = datasets.hill_screen(n_genes=60, n_cells=1200, seed=3, n_combinations=6, redundant=True, gate="and",
                               shared_hubs=True)
    triads = [t.split("+") for t in raw.uns["synthetic"]["shared_hub_triads"].split(",")]
    hubs = raw.uns["synthetic"]["redundant_hubs"].split(",")
    assert len(triads) == len(hubs) == 2 and len({g for t in triads for g in t}) == 6  # disjoint
    doubles = {p for p in raw.obs["perturbation"].unique() if "+" in p}
    assert doubles == {f"{a}+{b}" for t in triads for a, b in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2]))}
    assert sorted(np.asarray(raw.uns["planted_hill"]["and_genes"]).astype(str)) == sorted(hubs)
    genes = np.asarray(raw.uns["planted_hill"]["genes"]).astype(str)
    basal = dict(zip(genes, np.asarray(raw.uns["planted_hill"]["basal"], dtype=float), strict=True))
    planted = raw.uns["planted_network"]
    src, tgt = np.asarray(planted["source"]).astype(str), np.asarray(planted["target"]).astype(str)
    base = np.log1p(np.full(len(genes), 5.0))
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=genes)
    gene = {g: i for i, g in enumerate(genes)}
    folds = np.array([0.3, 0.2, 0.6])
    for triad, hub in zip(triads, hubs, strict=True):
        assert sorted(src[tgt == hub]) == sorted(triad)
        pre = base.astype(np.float32).copy()
        for t, f in zip(triad, folds, strict=True):
            pre[gene[t]] = np.log1p(f * np.expm1(base[gene[t]]))
        fold = np.expm1(oracle(pre)[gene[hub]].astype(np.float64)) / 5.0
        b0 = basal[hub]
        assert_allclose(fold, (b0 + 9 * np.prod(folds**2 / (folds**2 + 1))) / (b0 + 9 / 8), rtol=1e-4)
    with pytest.raises(ValueError, match="shared_hubs"):
        datasets.hill_screen(n_genes=60, n_cells=400, n_combinations=6, redundant=True, shared_hubs=True)
    with pytest.raises(ValueError, match="multiple of 3"):
        datasets.hill_screen(n_genes=60, n_cells=400, n_combinations=4, redundant=True, gate="and",
                             shared_hubs=True)
    with pytest.raises(ValueError, match="CRISPRi targets"):
        datasets.hill_screen(n_genes=60, n_cells=400, n_combinations=30, redundant=True, gate="and",
                             shared_hubs=True)


def test_a_double_with_validation_cells_is_not_scored(redundant_pairs):
    # validation cells choose the early-stopping checkpoint: such a double is not independent
    _, pairs = redundant_pairs
    first = double_arms(pairs)[0][0]
    role = pairs.cell_role.copy()
    role[np.flatnonzero(pairs.cell_pert == first)[:3]] = "val"
    scored = [p for p, _ in double_arms(dataclasses.replace(pairs, cell_role=role, _cache={}))]
    assert first not in scored and len(scored) == 2


def test_the_app_verdict_never_calls_a_dose_effect_learned():
    from lazynet_core.ui.services import _interaction_verdict

    assert _interaction_verdict(0.06, 0.087).startswith("No better than the dose-only null")
    assert _interaction_verdict(0.2, 0.2).startswith("No better")  # a tie is not a win
    assert _interaction_verdict(0.2001, 0.2).startswith("No better")  # nor is a near-tie on one double
    assert _interaction_verdict(-0.1, -0.3).startswith("No better")  # a negative r never wins
    assert _interaction_verdict(0.05, 0.6).startswith("No better")  # and a loss claims no cause
    assert "knock-down levels match" in _interaction_verdict(0.2, float("nan"))  # undefined null: no dose
    assert "does not follow" in _interaction_verdict(-0.2, float("nan"))
    assert _interaction_verdict(0.25, 0.02).startswith("Beyond the dose-only null here (r 0.250 vs 0.020)")
    assert "undefined" in _interaction_verdict(float("nan"), 0.1)


# ----------------------------------------------------------------------------- the planted Hill oracle
def _hill_by_hand(x, h, activating):
    act = x**2 / (h**2 + x**2)
    return act if activating else 1.0 - act


def test_planted_hill_oracle_keeps_the_control_state_and_solves_a_child_by_hand(redundant_pairs):
    raw, pairs = redundant_pairs
    base = pairs.control_mean("train").astype(np.float64)
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=pairs.genes)
    assert_allclose(oracle(base.astype(np.float32)), base, atol=1e-5)  # no intervention, no change
    # a gene whose only regulator is a master regulator (basal production only, so its noiseless
    # level is its basal): knock the master down to a quarter and solve the child by hand
    planted, hill = raw.uns["planted_network"], raw.uns["planted_hill"]
    src, tgt, w = (np.asarray(planted[k]) for k in ("source", "target", "weight"))
    names = np.asarray(hill["genes"]).astype(str)
    basal = dict(zip(names, np.asarray(hill["basal"], dtype=float), strict=True))
    masters = set(names) - set(tgt.astype(str))
    child = next(str(t) for t in sorted(set(tgt.astype(str)))
                 if (tgt == t).sum() == 1 and str(src[tgt == t][0]) in masters)
    master, k = str(src[tgt == child][0]), float(w[tgt == child][0])
    gene = {g: i for i, g in enumerate(pairs.genes)}
    pre = base.astype(np.float32).copy()
    pre[gene[master]] = np.log1p(0.25 * np.expm1(base[gene[master]]))
    post = oracle(pre)
    h = basal[master]
    fold = ((basal[child] + abs(k) * _hill_by_hand(0.25 * h, h, k > 0))
            / (basal[child] + abs(k) * _hill_by_hand(h, h, k > 0)))
    assert_allclose(post[gene[child]], np.log1p(fold * np.expm1(base[gene[child]])), rtol=1e-5)
    assert post[gene[master]] == pre[gene[master]]  # the intervened gene stays where it was set
    batch = oracle(np.stack([pre, base.astype(np.float32)]))
    assert_allclose(batch[0], post)
    assert_allclose(batch[1], base, atol=1e-5)


def test_planted_hill_oracle_adds_an_or_gates_arms_in_expression(redundant_pairs):
    # A hub's production is basal + K·hill(A) + K·hill(B) with decay 1: noise-free, the double's
    # change of the hub is exactly the sum of its arms' changes in expression (count) space, while
    # in log space it is far below their sum (the synergy of the observed cells, test above)
    raw, pairs = redundant_pairs
    base = pairs.control_mean("train").astype(np.float64)
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=pairs.genes)
    gene = {g: i for i, g in enumerate(pairs.genes)}
    hubs = raw.uns["synthetic"]["redundant_hubs"].split(",")
    planted = raw.uns["planted_network"]
    src, tgt = np.asarray(planted["source"]).astype(str), np.asarray(planted["target"]).astype(str)
    for hub in hubs:
        a, b = sorted(src[tgt == hub])
        states = []
        for targets in ((a,), (b,), (a, b)):
            pre = base.astype(np.float32).copy()
            for t in targets:
                pre[gene[t]] = np.log1p(0.2 * np.expm1(base[gene[t]]))
            states.append(oracle(pre)[gene[hub]].astype(np.float64))
        arm_a, arm_b, both = np.expm1(states) - np.expm1(base[gene[hub]])
        assert_allclose(both, arm_a + arm_b, rtol=1e-4)
        log_change = np.array(states) - base[gene[hub]]
        assert log_change[2] < log_change[0] + log_change[1] - 0.1


def test_planted_hill_oracle_predicts_the_screens_single_arms(redundant_pairs):
    # the noise-free dynamics against cells that never reached training: every knock-down that moves
    # its target by > 0.5 log units and has downstream genes is predicted with r > 0.6
    from lazynet_core.metrics import reference_mean

    raw, pairs = redundant_pairs
    base = pairs.control_mean("train").astype(np.float64)
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=pairs.genes)
    ref = reference_mean(pairs, "independent")
    rs = []
    for p, label in enumerate(pairs.perturbations):
        pre, targets = pairs.pre_state(p, "test"), pairs.pert_targets[p]
        if "+" in str(label) or np.abs(pre[targets] - base[targets]).max() < 0.5:
            continue
        keep = np.ones(len(base), dtype=bool)
        keep[targets] = False
        predicted = oracle(pre)[keep] - base[keep]
        if np.abs(predicted).max() > 1e-6:
            rs.append(np.corrcoef(predicted, (pairs.pert_mean(p, "test") - ref)[keep])[0, 1])
    assert len(rs) >= 4 and min(rs) > 0.6, rs


def test_planted_hill_oracle_refuses_other_screens_and_unknown_genes(redundant_pairs):
    raw, pairs = redundant_pairs
    with pytest.raises(ValueError, match="hill_screen"):
        datasets.planted_hill_predictor(datasets.toy_screen(), base=np.zeros(8), genes=["G1"])
    with pytest.raises(ValueError, match="NOPE"):
        datasets.planted_hill_predictor(raw, base=np.zeros(2), genes=[str(pairs.genes[0]), "NOPE"])


def _gate_hub_folds(gate: str) -> tuple[dict, dict]:
    """Per hub of a small ``gate`` screen: its fold with arm A at 0.3, arm B at 0.2 and both (the
    noise-free dynamics on a flat base of 5 counts), and its basal production."""
    raw = datasets.hill_screen(n_genes=40, n_cells=2400, seed=3, n_combinations=3, redundant=True, gate=gate)
    assert raw.uns["synthetic"]["gate"] == gate
    hubs = raw.uns["synthetic"]["redundant_hubs"].split(",")
    assert sorted(np.asarray(raw.uns["planted_hill"][f"{gate}_genes"]).astype(str)) == sorted(hubs)
    assert set(raw.uns["planted_hill"]) == {"genes", "basal", f"{gate}_genes"}
    genes = np.asarray(raw.uns["planted_hill"]["genes"]).astype(str)
    basal = dict(zip(genes, np.asarray(raw.uns["planted_hill"]["basal"], dtype=float), strict=True))
    base = np.log1p(np.full(len(genes), 5.0))
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=genes)
    gene = {g: i for i, g in enumerate(genes)}
    planted = raw.uns["planted_network"]
    src, tgt = np.asarray(planted["source"]).astype(str), np.asarray(planted["target"]).astype(str)
    folds = {}
    for hub in hubs:
        a, b = sorted(src[tgt == hub])
        folds[hub] = []
        for targets, levels in (((a,), (0.3,)), ((b,), (0.2,)), ((a, b), (0.3, 0.2))):
            pre = base.astype(np.float32).copy()
            for t, f in zip(targets, levels, strict=True):
                pre[gene[t]] = np.log1p(f * np.expm1(base[gene[t]]))
            folds[hub].append(np.expm1(oracle(pre)[gene[hub]].astype(np.float64)) / 5.0)
    return folds, {hub: basal[hub] for hub in hubs}


def test_an_and_gate_hub_multiplies_its_activators_hill_terms():
    # gate="and": hub = basal + 6 · hill(A) · hill(B), each term 0.5 at control (a regulator's
    # noiseless level is its half-response), so the hub's noiseless level is basal + 1.5 and the
    # double's fold follows from the single arms' folds by the product, whatever the knock-downs
    folds, basal = _gate_hub_folds("and")
    for hub, (fa, fb, fab) in folds.items():
        b0, x0 = basal[hub], basal[hub] + 1.5
        expected = (b0 + (fa * x0 - b0) * (fb * x0 - b0) / (x0 - b0)) / x0
        assert_allclose(fab, expected, rtol=1e-4)
        assert fa < 0.5 and fb < 0.5  # either arm alone shuts most of it
    with pytest.raises(ValueError, match="gate"):
        datasets.hill_screen(n_genes=30, n_cells=400, n_combinations=2, gate="and")  # needs redundant
    with pytest.raises(ValueError, match="gate"):
        datasets.hill_screen(n_genes=30, n_cells=400, n_combinations=2, redundant=True, gate="xor")


def test_a_backup_gate_hub_loses_more_to_the_double_than_the_sum_or_product_of_its_arms():
    # gate="backup": hub = basal + 6 · (1 − (1 − hill(A)) · (1 − hill(B))), each term 0.5 at control,
    # so the noiseless hub is basal + 4.5; with A and B clamped at folds f the term is f²/(f² + 1).
    # Either arm alone keeps most of it; the double shuts it far more than the arms' count changes
    # added or their folds multiplied (the no-model combinations), which is what makes it a test
    folds, basal = _gate_hub_folds("backup")
    term = {0.3: 0.09 / 1.09, 0.2: 0.04 / 1.04}
    for hub, (fa, fb, fab) in folds.items():
        b0, x0 = basal[hub], basal[hub] + 4.5
        assert_allclose(fa, (b0 + 6 * (1 - (1 - term[0.3]) * 0.5)) / x0, rtol=1e-4)
        assert_allclose(fb, (b0 + 6 * (1 - (1 - term[0.2]) * 0.5)) / x0, rtol=1e-4)
        assert_allclose(fab, (b0 + 6 * (1 - (1 - term[0.3]) * (1 - term[0.2]))) / x0, rtol=1e-4)
        assert fa > 0.6 and fb > 0.6  # either arm alone keeps most of it
        assert fab < 0.5 * fa * fb  # far below the product of the arms' folds
        assert fab < 0.5 * (fa + fb - 1)  # and below their count changes added
    with pytest.raises(ValueError, match="gate"):
        datasets.hill_screen(n_genes=30, n_cells=400, n_combinations=2, gate="backup")  # needs redundant


def test_shared_backup_hubs_need_any_of_their_three_targets():
    # shared_hubs with gate="backup": hub = basal + 9 · (1 − Π (1 − hill)), 9 · 7/8 above basal at control
    raw = datasets.hill_screen(n_genes=60, n_cells=1200, seed=3, n_combinations=6, redundant=True,
                               gate="backup", shared_hubs=True)
    triads = [t.split("+") for t in raw.uns["synthetic"]["shared_hub_triads"].split(",")]
    hubs = raw.uns["synthetic"]["redundant_hubs"].split(",")
    assert sorted(np.asarray(raw.uns["planted_hill"]["backup_genes"]).astype(str)) == sorted(hubs)
    genes = np.asarray(raw.uns["planted_hill"]["genes"]).astype(str)
    basal = dict(zip(genes, np.asarray(raw.uns["planted_hill"]["basal"], dtype=float), strict=True))
    base = np.log1p(np.full(len(genes), 5.0))
    oracle = datasets.planted_hill_predictor(raw, base=base, genes=genes)
    gene = {g: i for i, g in enumerate(genes)}
    folds = np.array([0.3, 0.2, 0.6])
    for triad, hub in zip(triads, hubs, strict=True):
        pre = base.astype(np.float32).copy()
        for t, f in zip(triad, folds, strict=True):
            pre[gene[t]] = np.log1p(f * np.expm1(base[gene[t]]))
        fold = np.expm1(oracle(pre)[gene[hub]].astype(np.float64)) / 5.0
        b0 = basal[hub]
        expected = (b0 + 9 * (1 - np.prod(1 - folds**2 / (folds**2 + 1)))) / (b0 + 9 * 7 / 8)
        assert_allclose(fold, expected, rtol=1e-4)


def test_planted_hill_oracle_reads_any_gene_order_and_a_float64_base(redundant_pairs):
    # the columns follow ``genes`` (a reversed subset gives the full predictor's values there, paths
    # through the genes left out still counted), and a float64 base with a float32 pre-state of the
    # same control state is no intervention at all
    raw, pairs = redundant_pairs
    base = pairs.control_mean("train").astype(np.float64)
    full = datasets.planted_hill_predictor(raw, base=base, genes=pairs.genes)
    gene = {g: i for i, g in enumerate(pairs.genes)}
    source = gene[str(np.asarray(raw.uns["planted_network"]["source"])[0])]
    subset = np.array(sorted({*range(0, pairs.n_genes, 2), source}))[::-1]
    part = datasets.planted_hill_predictor(raw, base=base[subset], genes=np.asarray(pairs.genes)[subset])
    pre = base.astype(np.float32).copy()
    pre[source] = np.log1p(0.25 * np.expm1(base[source]))
    moved = np.abs(full(pre) - base) > 1e-3
    assert moved.sum() >= 2 and (moved & ~np.isin(np.arange(pairs.n_genes), subset)).any()
    assert_allclose(part(pre[subset]), full(pre)[subset], rtol=1e-6)
    assert_allclose(full((base + 1e-7).astype(np.float32)), base, atol=1e-5)
