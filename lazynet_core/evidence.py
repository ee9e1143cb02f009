"""What the screen itself says about a Jacobian edge: one vocabulary for the UI, CSV and GraphML.

An edge ``s -> t`` with consensus elasticity ``J = J[t, s]`` gets exactly one of four words:

``interventional``
    ``s`` was perturbed alone in **training** cells. Recorded: the screen's own Δ of ``t`` in those
    cells against the control reference (``screen_delta``), the cell count (``n_cells``) and whether
    the sign of ``J · Δs`` (``Δs``, the shift of ``s`` itself in those cells, ``source_delta``: negative
    for a knock-down, so a repressing edge predicts ``t`` up) agrees with it (``sign_agrees``). This
    agreement is in-sample: the model was fitted to those cells.
``held_out``
    ``s`` was perturbed alone only in cells that never reached training (a held-out
    perturbation): the same fields, scored out of sample.
``observational``
    ``s`` was never perturbed alone, but among control cells ``s`` and ``t`` are correlated with the
    sign of ``J`` (``coexpr_r``) at permutation p < ``alpha`` (``coexpr_p``). With
    ``EvidenceConfig(cells="pooled")`` (a run whose start read the pooled covariance) the cells are the
    training controls and trained perturbations' training cells, each centred on its group's mean,
    and ``s`` is permuted within groups.
``model_only``
    Nothing in the screen supports the edge: the regulator was never perturbed and the control
    cells show no significant co-expression of the right sign. Such edges are drawn dashed and
    grey, and are not followed by default.

Replica noise gives the default threshold: an edge is *above noise* when ``|J| > noise_factor ·
sd`` (sd = standard deviation of the replicas' J); :class:`SupportedProvider` applies both rules
while a subgraph is grown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from lazynet_core.config import COVARIANCE_CELLS
from lazynet_core.metrics import _group_means, _training_groups
from lazynet_core.network import EVIDENCE_EDGE_COLUMNS, _as_partner_frame, _provider

EVIDENCE = ("interventional", "held_out", "observational", "model_only")
EVIDENCE_COLUMNS = EVIDENCE_EDGE_COLUMNS[:-1]  # all but above_noise, which needs the replica sd


@dataclass(frozen=True)
class EvidenceConfig:
    """Options of :class:`EdgeEvidence`.

    Parameters
    ----------
    alpha
        Permutation p below which control-cell co-expression supports an edge.
    n_permutations
        Permutations of the regulator's control values per p (p >= 1 / (n + 1)).
    noise_factor
        An edge is above replica noise when ``|J| > noise_factor · sd``.
    seed
        Seed of the permutations.
    cells
        Which training cells the co-expression reads (``config.COVARIANCE_CELLS``): ``"controls"``
        or ``"pooled"`` (as ``ModelConfig.covariance_cells``; needs the perturbed rows in memory).
    """

    alpha: float = 0.05
    n_permutations: int = 999
    noise_factor: float = 2.0
    seed: int = 0
    cells: str = "controls"

    def __post_init__(self) -> None:
        if self.cells not in COVARIANCE_CELLS:
            raise ValueError(f"cells must be one of {list(COVARIANCE_CELLS)}, got {self.cells!r}.")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}.")
        if self.n_permutations < 19:
            raise ValueError(f"n_permutations must be >= 19 (p can reach 0.05), got {self.n_permutations}.")
        if self.noise_factor < 0:
            raise ValueError(f"noise_factor must be >= 0, got {self.noise_factor}.")


class EdgeEvidence:
    """Classify edges of a model on the screen it was trained on.

    Parameters
    ----------
    pairs
        The :class:`lazynet_core.pairs.Pairs` of the run (its split decides interventional versus
        held-out evidence).
    config
        Thresholds (:class:`EvidenceConfig`).

    Notes
    -----
    Deltas are taken against the independent control reference when the pairs keep one, else
    against the training controls. Co-expression uses the training control cells (or the pooled
    cells, :class:`EvidenceConfig`).

    Raises
    ------
    ScreenError
        ``cells="pooled"`` on pairs streamed from disk, which hold no perturbed rows.
    """

    def __init__(self, pairs: Any, config: EvidenceConfig = EvidenceConfig()) -> None:
        self.pairs, self.config = pairs, config
        self.genes = np.asarray(pairs.genes, dtype=str)
        self._index = {g: i for i, g in enumerate(self.genes)}
        reference = "reference" if len(pairs.cells(-1, "reference")) else "train"
        self.reference = np.asarray(pairs.control_mean(reference), dtype=np.float64)
        self._perturbed: dict[str, tuple[str, np.ndarray, int]] = {}
        for p, targets in enumerate(pairs.pert_targets):
            if len(targets) != 1:
                continue
            gene = str(self.genes[int(targets[0])])
            train = pairs.cells(p, "train")
            if len(train):
                self._perturbed[gene] = ("interventional", pairs._mean(train).astype(np.float64), len(train))
                continue
            held = np.concatenate([pairs.cells(p, "test"), pairs.cells(p, "val")])
            if len(held) and gene not in self._perturbed:
                self._perturbed[gene] = ("held_out", pairs._mean(held).astype(np.float64), len(held))
        rows, self._group = _training_groups(pairs, cells=config.cells)
        self._controls = pairs.X[rows]  # the co-expression cells (controls, or every training group)
        self._coexpr: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # source -> (column, permutations)

    # ---- per regulator -------------------------------------------------------------------------
    def regulator_kind(self, gene: str) -> str | None:
        """``"interventional"``, ``"held_out"`` or ``None`` (never perturbed alone)."""
        hit = self._perturbed.get(str(gene))
        return None if hit is None else hit[0]

    def never_perturbed(self, genes: list[str]) -> list[str]:
        """The genes of ``genes`` that the screen never perturbed alone."""
        return [g for g in genes if str(g) not in self._perturbed]

    def _column(self, idx: np.ndarray) -> np.ndarray:
        """Dense co-expression-cell columns ``idx`` (cells × len(idx)), each group centred on its mean;
        never the whole matrix."""
        x = np.asarray(self._controls[:, idx].todense(), dtype=np.float64)
        return x - _group_means(x, self._group)[self._group]

    def _permutations(self, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n_permutations × cells) shuffles of ``s``, within groups (one group: a plain shuffle)."""
        n = self.config.n_permutations
        if self._group.max(initial=0) == 0:
            return np.stack([rng.permutation(s) for _ in range(n)])
        order = np.argsort(self._group, kind="stable")  # cells by group, so groups are blocks
        shuffled = np.argsort(self._group[order][None, :] + rng.random((n, len(s))), axis=1)
        perms = np.empty((n, len(s)))
        perms[:, order] = s[order][shuffled]
        return perms

    def _coexpression(self, source: str, t_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pearson r of ``source`` with genes ``t_idx`` among control cells, and permutation p."""
        s_idx = self._index[source]
        if source not in self._coexpr:
            s = self._column(np.array([s_idx]))[:, 0]
            rng = np.random.default_rng([self.config.seed, s_idx])
            perms = self._permutations(s, rng)
            self._coexpr[source] = (s, perms)
        s, perms = self._coexpr[source]
        xt = self._column(t_idx)
        norms = np.sqrt((xt**2).sum(axis=0)) * np.sqrt(s @ s)
        constant = norms == 0
        norms[constant] = np.inf
        r = (s @ xt) / norms
        exceed = (np.abs(perms @ xt) / norms >= np.abs(r) - 1e-12).sum(axis=0)
        p = (1 + exceed) / (1 + self.config.n_permutations)
        p[constant] = 1.0
        return r, p

    # ---- per edge ----------------------------------------------------------------------------
    def classify(self, source: str, targets: list[str], weights: np.ndarray) -> pd.DataFrame:
        """Evidence of edges ``source -> targets`` with elasticities ``weights``.

        Returns
        -------
        pandas.DataFrame
            Indexed by target, columns :data:`EVIDENCE_COLUMNS`.
        """
        weights = np.asarray(weights, dtype=np.float64)
        t_idx = np.array([self._index[str(t)] for t in targets], dtype=int)
        out = pd.DataFrame(index=pd.Index(list(map(str, targets)), name="target"), columns=EVIDENCE_COLUMNS)
        out["source_delta"] = np.nan
        out["screen_delta"] = np.nan
        out["n_cells"] = 0
        out["sign_agrees"] = pd.array([pd.NA] * len(targets), dtype="boolean")
        r, p = self._coexpression(str(source), t_idx)
        out["coexpr_r"] = r
        out["coexpr_p"] = p
        hit = self._perturbed.get(str(source))
        if hit is not None:
            kind, mean, n = hit
            s = self._index[str(source)]
            delta = mean[t_idx] - self.reference[t_idx]
            shift = mean[s] - self.reference[s]
            out["evidence"] = kind
            out["source_delta"] = shift  # the source's own change there (< 0 for a knock-down)
            out["screen_delta"] = delta
            out["n_cells"] = n
            out["sign_agrees"] = pd.array(np.sign(weights * shift) == np.sign(delta), dtype="boolean")
            return out
        supported = (out["coexpr_p"].to_numpy(float) < self.config.alpha) & (
            np.sign(out["coexpr_r"].to_numpy(float)) == np.sign(weights))
        out["evidence"] = np.where(supported, "observational", "model_only")
        return out

    def annotate(self, G: nx.DiGraph) -> nx.DiGraph:
        """A copy of ``G`` whose edges carry :data:`EVIDENCE_COLUMNS` and ``above_noise``."""
        H = G.copy()
        by_source: dict[str, list[tuple[str, float]]] = {}
        for u, v, d in H.edges(data=True):
            by_source.setdefault(str(u), []).append((str(v), float(d.get("weight", 0.0))))
        for source, items in by_source.items():
            frame = self.classify(source, [t for t, _ in items], np.array([w for _, w in items]))
            for target, row in frame.iterrows():
                d = H.edges[source, target]
                d.update({k: _plain(row[k]) for k in EVIDENCE_COLUMNS})
                d["above_noise"] = self.above_noise(d.get("weight", np.nan), d.get("sd", np.nan))
        for g in H.nodes:
            H.nodes[g]["perturbed"] = self.regulator_kind(str(g)) or "never"
        return H

    def above_noise(self, weight: float, sd: float) -> bool:
        """``|J| > noise_factor · sd`` (True when the replica spread is unknown)."""
        if sd is None or not np.isfinite(sd):
            return True
        return bool(abs(weight) > self.config.noise_factor * sd)


def _plain(value: Any) -> Any:
    if value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class SupportedProvider:
    """Wrap a Jacobian neighbours provider so subgraph expansion follows evidence, not noise.

    Partners whose edge is ``model_only`` are dropped unless ``include_model_only``; partners whose
    |J| does not exceed ``noise_factor`` × the replica sd are always dropped. Works for ``"out"``
    (the gene is the regulator) and ``"in"`` (the gene is the target) directions.
    """

    def __init__(self, provider: Any, evidence: EdgeEvidence, *, include_model_only: bool = False,
                 pool: int = 256) -> None:
        self.provider, self.evidence = _provider(provider), evidence
        self.include_model_only = include_model_only
        self.pool = int(pool)
        self.genes = getattr(self.provider, "genes", evidence.genes)

    def _filter(self, gene: str, frame: pd.DataFrame, direction: str) -> pd.DataFrame:
        if frame is None or len(frame) == 0:
            return frame
        sd = frame["sd"].to_numpy(float) if "sd" in frame.columns else np.full(len(frame), np.nan)
        w = frame["weight"].to_numpy(float)
        keep = np.array([self.evidence.above_noise(a, b) for a, b in zip(w, sd, strict=True)], dtype=bool)
        if not self.include_model_only:
            if direction == "out":
                ev = self.evidence.classify(gene, list(map(str, frame.index)), w)["evidence"].to_numpy()
            else:
                ev = np.array([self.evidence.classify(str(s), [gene], np.array([wi]))["evidence"].iloc[0]
                               for s, wi in zip(frame.index, w, strict=True)])
            keep &= ev != "model_only"
        return frame[keep]

    def batch(self, genes: list[str], direction: str, *, top: int | None = None) -> dict[str, pd.DataFrame]:
        """Filtered partners of ``genes`` (a wider pool is fetched so ``top`` survive filtering)."""
        pool = None if top is None else max(self.pool, 4 * top)
        if hasattr(self.provider, "batch"):
            answers = self.provider.batch(list(genes), direction, top=pool)
        else:
            answers = {g: self.provider(g, direction) for g in genes}
        out = {}
        for g in genes:
            frame = self._filter(str(g), _as_partner_frame(answers[g], str(g)), direction)
            if top is not None and frame is not None and len(frame) > top:
                frame = frame.loc[frame["weight"].abs().sort_values(ascending=False).index[:top]]
            out[g] = frame
        return out

    def __call__(self, gene: str, direction: str = "out") -> pd.DataFrame:
        return self.batch([gene], direction)[gene]
