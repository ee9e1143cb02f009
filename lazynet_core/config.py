"""Frozen configuration dataclasses.

Every choice the method leaves open (see ``method.md``) is a field here, never a hidden constant.
Each config round-trips through ``to_dict`` / ``from_dict`` so a saved run rebuilds exactly.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

T = TypeVar("T", bound="_Config")


class _Config:
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of every field."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build the config from ``to_dict`` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"Unknown {cls.__name__} field(s) {unknown}; known fields are {sorted(known)}."
            raise ValueError(msg)
        return cls(**data)

    def replace(self: T, **changes: Any) -> T:
        """Return a copy with ``changes`` applied (validated like a new instance)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


#: Which training cells a covariance start, baseline or co-expression reads (ModelConfig.covariance_cells).
COVARIANCE_CELLS = ("controls", "pooled")
#: Where the output layer's change is added (``ModelConfig.output``).
OUTPUTS = ("log", "counts", "fold")


@dataclass(frozen=True)
class ModelConfig(_Config):
    """Architecture of one LazyNet replica.

    Parameters
    ----------
    hidden
        Hidden width H. ``None`` means "auto": one unit per gene (H = G, method §7b) up to
        ``auto_full_width_max`` genes, else the bottleneck ``auto_bottleneck`` (method §1).
    depth
        Number of log-linear-exp blocks.
    init
        ``"linear"`` (method §7b: ``W_E = I`` + noise so F starts linear; zero output layer) or
        ``"identity"`` (method §7: small positive ``W_L``, ``b_L`` ≈ 0.1, zero output layer).
    positive
        Keep ``W_L >= 0`` and ``b_L > 0`` by a softplus parametrisation so the log clamp never bites.
    start
        ``"zero"`` (output layer zero: F starts as the identity) or ``"control_covariance"`` (our
        addition for unseen targets, method §7d): the output layer is set so that at the control
        mean the Jacobian equals the regression of each gene on each other gene among training
        control cells, cov(i, j) / var(j), diagonal 0 — the observational signal that delta-target
        training alone never sees. Needs one hidden unit per gene.
    freeze_unperturbed
        Keep at their start the columns of every gene that no training perturbation targets: the
        first block's ``W_L`` columns and, with one unit per gene, its ``W_E`` and ``W_out``
        columns. The screen carries no interventional information about those genes; training
        would only move these entries by Adam's steps on control-cell noise (about ±0.01 each),
        which a large knock-down of such a gene at prediction time multiplies into the output
        (issue 11). Their own units' rows and biases still train (they carry trained targets'
        effects), so such a gene's Jacobian column keeps the start's direction, the control cells'
        regression, but not its scale (1.2–1.4× after training in the known-answer test).
        Measured: freezing those units whole as well cost the real screen's held-out-cell fit (0.285
        → 0.225, one run). Needs ``TrainConfig.weight_decay=0``.
    anchor
        With ``start="control_covariance"``: ``f(x) = W_out · (h(x) − h(x_ref))`` with ``x_ref`` the
        training control mean, so the control state is a fixed point (``F(x_ref) = x_ref``) for any
        weights and a prediction carries no learned offset; ``b_out`` is unused.
    output
        Where the output layer's change is added (our addition, issue 11): ``"log"`` (default, the
        method as published: ``F(x) = x + g(x)`` in log expression) or ``"counts"``: ``g`` is a change
        in expression, ``F(x) = log1p(expm1(x) + g(x))``, written ``x + log1p(g · e^(−x))`` so that
        ``g = 0`` is exactly no change (clamped at no expression, ``F(x) >= 0``). Inputs are still log
        expression and units still products of their linear combinations; only the sum over units
        moves to counts,
        where the contributions of redundant regulators add (an OR gate), so the model can predict a
        double's interaction that log-space addition cannot. Jacobians stay log-space elasticities.
        The change is scaled per gene, ``g = e^x_ref ⊙ W_out (h − h_ref)``, with ``x_ref`` set by the
        Jacobian start (1 otherwise), so a step of ``W_out`` moves every gene's ``f`` by about as much
        near the control state, as with ``"log"``. Or ``"fold"``: ``g`` is a log fold change of
        expression, ``F(x) = log1p(expm1(x) · e^g(x))``, so the units' contributions multiply
        expression exactly (log-space addition without log1p's pseudo-count, which on a gene of few
        counts makes the product of two arms' folds read as an interaction: an AND gate's double,
        README, Combinations); ``g = 0`` is no change, a gene not expressed stays so. Scaled per gene
        by ``e^x_ref / expm1(x_ref)`` so that the Jacobian start is the log-output one.
    covariance_cells
        Which training cells the ``"control_covariance"`` start's regression reads (our addition,
        issue 11): ``"controls"`` (default) or ``"pooled"``, the controls and every trained
        perturbation's training cells, each group centred on its own mean, so a perturbation's shift
        never enters, only the cells' variation around it (the ``pooled_covariance`` baseline of
        ``metrics.baseline_predictions``). Where perturbed cells outnumber controls, several times the
        cells, hence a less noisy regression (README, Results). Needs the perturbed rows in memory.
    """

    hidden: int | None = None
    depth: int = 1
    init: str = "linear"
    positive: bool = True
    start: str = "zero"
    init_noise: float = 0.1
    centre_log: bool = False
    freeze_unperturbed: bool = False
    anchor: bool = False
    log_floor: float = 1e-6
    exp_clamp: float = 20.0
    auto_full_width_max: int = 1024
    auto_bottleneck: int = 256
    output: str = "log"
    covariance_cells: str = "controls"

    def __post_init__(self) -> None:
        _check(
            self.covariance_cells in COVARIANCE_CELLS,
            f"covariance_cells must be one of {list(COVARIANCE_CELLS)}, got {self.covariance_cells!r}.",
        )
        _check(
            self.covariance_cells == "controls" or self.start == "control_covariance",
            "covariance_cells='pooled' needs start='control_covariance' (it picks that start's cells).",
        )
        _check(
            self.output in OUTPUTS, f"output must be one of {list(OUTPUTS)}, got {self.output!r}."
        )
        _check(self.hidden is None or self.hidden >= 1, f"hidden must be >= 1 or None, got {self.hidden}.")
        _check(self.depth >= 1, f"depth must be >= 1, got {self.depth}.")
        _check(
            self.init in ("linear", "identity"), f"init must be 'linear' or 'identity', got {self.init!r}."
        )
        _check(self.log_floor > 0, f"log_floor must be > 0, got {self.log_floor}.")
        _check(
            self.start in ("zero", "control_covariance"),
            f"start must be 'zero' or 'control_covariance', got {self.start!r}.",
        )
        _check(self.init_noise >= 0, f"init_noise must be >= 0, got {self.init_noise}.")
        for name in ("centre_log", "anchor"):
            _check(
                not getattr(self, name) or self.start == "control_covariance",
                f"{name}=True needs start='control_covariance' (the control mean it refers to is set there).",
            )

    def hidden_for(self, n_genes: int) -> int:
        """Hidden width actually used for ``n_genes`` genes."""
        if self.hidden is not None:
            return int(self.hidden)
        return n_genes if n_genes <= self.auto_full_width_max else self.auto_bottleneck


@dataclass(frozen=True)
class PairConfig(_Config):
    """How (pre, post) training pairs and the train/test split are built (method §2).

    Parameters
    ----------
    pairing
        ``"pseudobulk"`` (means of ``k`` cells a side), ``"random_cells"`` (k = 1), or
        ``"control_mean"``: every pre-state is the training control mean itself (targets set), so
        training sees no control noise on the pre side; needs ``delta_targets``. Measured (issue
        11): k-cell noise in the pre-state is what teaches ``f`` to ignore genes it never saw
        perturbed, since a delta target does not depend on it.
    split
        ``"perturbations"`` (a fraction of the targets held out entirely, never seen in training,
        and a fraction of the other perturbations' cells) or ``"cells"`` (every perturbation seen;
        only cells held out). Evaluation reports both held-out sets, each labelled by its split.
    test_fraction
        Fraction of perturbations (or of each perturbation's cells) held out.
    val_fraction
        Fraction of the training perturbations (or cells) held out for early stopping. 0 (the
        default) keeps them in training: nothing uses a validation set unless
        ``TrainConfig.patience > 0``, which then needs ``val_fraction > 0``.
    reference_fraction
        Seeded share of the control cells kept as the **independent control reference**
        (role ``"reference"``): they never reach training, the gene scale, the pre-state pool or
        validation, and observed deltas are scored against their mean (``metrics.evaluate``'s
        ``reference="independent"``). 0 turns it off (old runs; only the training reference is
        then available).
    held_out
        Explicit perturbation labels (or target genes) to hold out entirely on the perturbation
        split, instead of a random ``test_fraction``; combinations containing a held-out single
        target are held out too, while a held-out combination (``"A+B"``) leaves its single arms
        in training (the combination benchmark). Used by ``cross_validate`` (leave-one-perturbation-
        out, K-fold).
    k
        Cells per pseudobulk side.
    resamples
        Pairs drawn per training perturbation per epoch.
    control_pairs
        Fraction of extra control→control pairs per epoch, relative to perturbation pairs.
    delta_targets
        Post = the same control pseudobulk used as pre + the perturbation's mean delta (method §7b),
        instead of an independent pseudobulk of perturbed cells.
    natural_pairs
        Fraction of extra "natural-variation" pairs per epoch, relative to perturbation pairs
        (our addition; 0 turns it off). For a random gene j, the ``k`` control cells with the
        highest (or lowest) x_j among a pool of ``natural_pool`` random control cells form the
        post side, and the pre side is a control pseudobulk with x_j set to their level: a
        do-intervention read off natural cell-to-cell variation. It is the only training signal
        that keeps the within-cell covariance of control cells, which is what carries information
        about regulators the screen never perturbed (method §7).
    natural_pool
        Control cells drawn per natural pair before the top/bottom ``k`` are kept.
    seed
        Seed of the split and of the pair sampling.
    """

    pairing: str = "pseudobulk"
    split: str = "perturbations"
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    reference_fraction: float = 0.3
    held_out: tuple[str, ...] | None = None
    k: int = 16
    resamples: int = 64
    control_pairs: float = 0.25
    delta_targets: bool = True
    natural_pairs: float = 0.0
    natural_pool: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        _check(
            self.pairing in ("pseudobulk", "random_cells", "control_mean"),
            f"pairing must be 'pseudobulk', 'random_cells' or 'control_mean', got {self.pairing!r}.",
        )
        _check(
            self.pairing != "control_mean" or self.delta_targets,
            "pairing='control_mean' needs delta_targets=True (the post side is the pre-state plus the "
            "perturbation's mean change).",
        )
        _check(
            self.split in ("perturbations", "cells"),
            f"split must be 'perturbations' or 'cells', got {self.split!r}.",
        )
        _check(0 < self.test_fraction < 1, f"test_fraction must be in (0, 1), got {self.test_fraction}.")
        _check(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        _check(
            0 <= self.reference_fraction < 1,
            f"reference_fraction must be in [0, 1) (share of control cells kept as the independent "
            f"reference), got {self.reference_fraction}.",
        )
        if self.held_out is not None:
            held = tuple(str(h) for h in self.held_out)
            _check(
                len(held) > 0, "held_out must name at least one perturbation, or be None for a random split."
            )
            object.__setattr__(self, "held_out", held)
        _check(self.k >= 1, f"k must be >= 1, got {self.k}.")
        _check(self.resamples >= 1, f"resamples must be >= 1, got {self.resamples}.")
        _check(self.control_pairs >= 0, f"control_pairs must be >= 0, got {self.control_pairs}.")
        _check(self.natural_pairs >= 0, f"natural_pairs must be >= 0, got {self.natural_pairs}.")
        _check(self.natural_pool >= 2, f"natural_pool must be >= 2, got {self.natural_pool}.")

    @property
    def cells_per_side(self) -> int:
        """Cells averaged on each side of a pair."""
        return 1 if self.pairing == "random_cells" else self.k


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Optimisation of an ensemble (method §3 and §7b).

    Parameters
    ----------
    replicas
        Independently seeded replicas (3 in the paper).
    epochs
        Maximum epochs per replica.
    batch_size
        Pairs per mini-batch.
    lr
        Adam learning rate; ``None`` means ``lr_scale / hidden width`` (method §7b scales it by
        the gene count, which is the hidden width of the default H = G model; for a bottleneck
        the hidden width measured better: network AUROC 0.94 vs 0.86 with H = 64 on the demo),
        clipped to ``[lr_min, lr_max]``.
    loss
        ``"std_mse"`` (per-gene standardised MSE, §7b) or ``"huber"`` (§3, δ = ``huber_delta``).
    patience
        Early stopping on the validation loss (held-out training perturbations on the
        perturbation split, held-out cells otherwise): stop after ``patience`` epochs without
        improvement and keep the best epoch. 0 (the default) trains all ``epochs`` with cosine
        decay and keeps the last epoch. Measured on the demo and Hill screens (3 split seeds): the
        validation loss on unseen perturbations flattens after ~10 epochs while the fit of the
        seen ones keeps improving, so early stopping at patience 8 left the model at the
        perturbed-mean level (training-fit delta-Pearson 0.33 vs 0.85 after 40 epochs; held-out
        perturbations 0.21 vs 0.26 on the Hill screen).
    time_budget_s
        Wall-clock budget for the whole ensemble; training stops cleanly when it is spent.
    device
        Torch device string; CPU by default.
    threads
        Torch intra-op threads. ``None`` (auto): 1 for models up to ``auto_threads_max_weights``
        genes × hidden units (every app and demo size), else up to 4 of the CPUs this process may
        use, leaving one free. Measured on the 2-core VM (issue 13): with torch's default of all
        cores, the demo took 16 s quiet but 103 s (median) and 359 s (worst) while another process
        competed for the CPU, against 20 s with one thread: spinning threads collapse under
        contention (``benchmarks/busy_cpu.py``: 1.58x slower under load with auto, 19x with all cores).
    shrink
        L1 prior on each perturbation's predicted change, in standard errors (issue 11): the penalty
        ``2 * shrink / sqrt(n_p) * |predicted change| / gene scale`` per pair of a perturbation with
        ``n_p`` training cells, so a change fitted freely per perturbation is its mean change
        soft-thresholded at ``shrink`` standard errors (most genes of a knock-down do not move; their
        noise is set to 0). 0 (default) is the method as published. Measured on 60 held-out Hill
        doubles with the anchored recipe: 2 beats the additive model by denoising the arms, and
        ties an additive model whose arms are soft-thresholded the same way (``additive_shrunk``;
        README, Results).
    """

    replicas: int = 3
    epochs: int = 40
    batch_size: int = 128
    lr: float | None = None
    lr_scale: float = 0.06
    lr_min: float = 1e-4
    lr_max: float = 3e-3
    cosine: bool = True
    weight_decay: float = 0.0
    loss: str = "std_mse"
    huber_delta: float = 1.0
    patience: int = 0
    seed: int = 0
    time_budget_s: float | None = None
    device: str = "cpu"
    threads: int | None = None
    auto_threads_max_weights: int = 4_000_000
    shrink: float = 0.0

    def __post_init__(self) -> None:
        _check(self.shrink >= 0, f"shrink is in standard errors and must be >= 0 (0 = off, the published "
                                 f"method; 2 measured best on doubles), got {self.shrink}.")
        _check(self.replicas >= 1, f"replicas must be >= 1, got {self.replicas}.")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}.")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}.")
        _check(self.lr is None or self.lr > 0, f"lr must be > 0 or None, got {self.lr}.")
        _check(self.loss in ("std_mse", "huber"), f"loss must be 'std_mse' or 'huber', got {self.loss!r}.")
        _check(self.patience >= 0, f"patience must be >= 0, got {self.patience}.")
        _check(
            self.threads is None or self.threads >= 1, f"threads must be >= 1 or None; got {self.threads}."
        )
        _check(
            self.time_budget_s is None or self.time_budget_s > 0,
            f"time_budget_s must be > 0 or None, got {self.time_budget_s}.",
        )

    def threads_for(self, n_genes: int, hidden: int) -> int:
        """Torch threads actually used for a model of ``n_genes`` genes and ``hidden`` units."""
        if self.threads is not None:
            return int(self.threads)
        if n_genes * hidden <= self.auto_threads_max_weights:
            return 1
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        return max(1, min(cpus - 1, 4))  # one core stays free for the app server and the browser

    def lr_for(self, hidden: int) -> float:
        """Learning rate actually used for a model of hidden width ``hidden``."""
        if self.lr is not None:
            return float(self.lr)
        return float(min(max(self.lr_scale / hidden, self.lr_min), self.lr_max))


@dataclass(frozen=True)
class NetworkConfig(_Config):
    """Seed-subgraph extraction (method §5, the "32×4 BFS").

    Parameters
    ----------
    breadth
        Partners kept per frontier gene (top by |consensus J|).
    depth
        BFS levels.
    direction
        ``"out"`` (regulator → targets), ``"in"`` or ``"both"``.
    min_abs
        Edges with |J| below this are never followed.
    level_caps
        Optional maximum number of new genes per level (``None`` = uncapped).
    """

    breadth: int = 32
    depth: int = 4
    direction: str = "out"
    min_abs: float = 0.0
    level_caps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check(self.breadth >= 1, f"breadth must be >= 1, got {self.breadth}.")
        _check(self.depth >= 1, f"depth must be >= 1, got {self.depth}.")
        _check(
            self.direction in ("out", "in", "both"),
            f"direction must be 'out', 'in' or 'both', got {self.direction!r}.",
        )
        _check(self.min_abs >= 0, f"min_abs must be >= 0, got {self.min_abs}.")
        if self.level_caps is not None:
            object.__setattr__(self, "level_caps", tuple(int(c) for c in self.level_caps))


#: Named recipes: the ``ModelConfig`` and ``PairConfig`` fields each one sets, offered by the app's Train
#: page and the CLI (``--recipe``). ``published``: the method as in the paper (delta pairs, 16-cell
#: pre-states, zero output start), the default. ``covariance``: the output layer starts at the control
#: cells' regression and each pre-state averages 256 control cells. ``anchored`` (issue 11): the same
#: start, kept where the screen has nothing to say — pre-states are the control mean itself, the
#: elasticities of never-perturbed genes stay at the start, logs are centred on the control state and
#: the control state is a fixed point — so an unseen target's prediction is the control cells'
#: regression and a trained perturbation's is fitted to its measured change (README, Results).
#: ``anchored_counts``: anchored, with the output change added in expression rather than log space
#: (``ModelConfig.output="counts"``), where redundant regulators' effects add (README, Combinations).
#: ``anchored_folds``: anchored, with the output a fold change of expression (``ModelConfig.output="fold"``),
#: where the effects of regulators that are both needed (an AND gate) multiply (README, Combinations).
#: ``anchored_pooled``: anchored, its start the regression over the controls *and* the training perturbed
#: cells, each group centred on its own mean (``ModelConfig.covariance_cells="pooled"``; README, Results).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "published": {"model": {"start": "zero"}, "pair": {"k": 16}},
    "covariance": {"model": {"start": "control_covariance"}, "pair": {"k": 256}},
    "anchored": {
        "model": {"start": "control_covariance", "init_noise": 0.0, "centre_log": True,
                  "freeze_unperturbed": True, "anchor": True},
        "pair": {"pairing": "control_mean", "control_pairs": 0.0},
    },
    "anchored_counts": {
        "model": {"start": "control_covariance", "init_noise": 0.0, "centre_log": True,
                  "freeze_unperturbed": True, "anchor": True, "output": "counts"},
        "pair": {"pairing": "control_mean", "control_pairs": 0.0},
    },
    "anchored_folds": {
        "model": {"start": "control_covariance", "init_noise": 0.0, "centre_log": True,
                  "freeze_unperturbed": True, "anchor": True, "output": "fold"},
        "pair": {"pairing": "control_mean", "control_pairs": 0.0},
    },
    "anchored_pooled": {
        "model": {"start": "control_covariance", "init_noise": 0.0, "centre_log": True,
                  "freeze_unperturbed": True, "anchor": True, "covariance_cells": "pooled"},
        "pair": {"pairing": "control_mean", "control_pairs": 0.0},
    },
}


#: Fields every recipe fixes (at their defaults unless the recipe sets them), so a run that changed
#: them is never labelled with a recipe's name.
_ALWAYS_MODEL = ("depth", "init")
_ALWAYS_PAIR = ("delta_targets", "natural_pairs")


def _recipe_fields(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields recipe ``name`` fixes: every model field any recipe sets (the default where this one
    sets none), and its own pair fields. A recipe that sets no pairing leaves the user's pairing
    (pseudobulk or random cells) alone but never takes another recipe's ``control_mean``."""
    model_keys = sorted({k for r in RECIPES.values() for k in r["model"]} | set(_ALWAYS_MODEL))
    model_default, pair_default = ModelConfig().to_dict(), PairConfig().to_dict()
    recipe = RECIPES[name]
    pair = {k: pair_default[k] for k in _ALWAYS_PAIR} | dict(recipe["pair"])
    return {k: recipe["model"].get(k, model_default[k]) for k in model_keys}, pair


def recipe_configs(
    name: str, *, model_config: ModelConfig = ModelConfig(), pair_config: PairConfig = PairConfig()
) -> tuple[ModelConfig, PairConfig]:
    """The configurations of recipe ``name``: the given ones with the recipe's fields set.

    Every model field any recipe sets is set (to this recipe's value, or the default) and the
    recipe's pair fields, so the result follows ``name`` whatever the inputs held; the other fields
    (hidden width, split, seed, and the pairing where the recipe sets none) are kept.

    Raises
    ------
    ValueError
        ``name`` is not in ``RECIPES``.
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose among {list(RECIPES)}.")
    model_fields, pair_fields = _recipe_fields(name)
    if "pairing" not in pair_fields and pair_config.pairing == "control_mean":
        pair_fields["pairing"] = PairConfig().pairing
    return model_config.replace(**model_fields), pair_config.replace(**pair_fields)


def recipe_name(model_config: ModelConfig, pair_config: PairConfig) -> str:
    """The name in ``RECIPES`` that these configurations follow, else a short description.

    Parameters
    ----------
    model_config, pair_config
        The configurations of a run.

    Returns
    -------
    str
        ``"published"``, ``"covariance"``, ``"anchored"``, or e.g.
        ``"custom (start control_covariance, k 64)"``.
    """
    model, pair = model_config.to_dict(), pair_config.to_dict()
    for name in RECIPES:
        model_fields, pair_fields = _recipe_fields(name)
        if "pairing" not in pair_fields and pair["pairing"] == "control_mean":
            continue
        same_model = all(model[k] == v for k, v in model_fields.items())
        if same_model and all(pair[k] == v for k, v in pair_fields.items()):
            return name
    output = "" if model_config.output == "log" else f", output {model_config.output}"
    if model_config.covariance_cells != "controls":
        output += f", {model_config.covariance_cells} cells"
    return f"custom (start {model_config.start}, k {pair_config.k}, pairing {pair_config.pairing}{output})"
