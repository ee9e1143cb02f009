"""Synthetic CRISPRi/a screens with a planted gene network (the ground truth).

Generators
----------
- :func:`toy_screen`: 8 genes, for unit tests.
- :func:`demo_screen`: ~300 real gene symbols, ~4,000 cells; shipped as ``assets/demo_screen.h5ad``
  (:func:`demo_path`, :func:`load_demo`; regenerate with ``python -m lazynet_core.datasets``).
- :func:`real_screen_path`: not synthetic; the shipped real TAP-seq CRISPRi screen (Schraivogel
  et al. 2020), see ``assets/schraivogel2020_README.md``.
- :func:`hill_screen`: SERGIO-style Hill kinetics, i.e. dynamics that are *not* the model's form.
- :func:`write_paper_screen`: paper scale (53k cells x 18k genes), generated and written in chunks.

Log-linear dynamics (toy, demo, paper)
--------------------------------------
Log expression ``y = mu + d`` with ``d = W d + eps``: ``W`` is a sparse signed DAG (``W[s, t]`` is
the effect of source ``s`` on target ``t`` in log space) and ``eps ~ N(0, noise_sd)`` is intrinsic
per-cell noise, so control-cell covariance carries the network. This is ``y = b + W y + eps`` with
``b = (I - W) mu``, whose noiseless solution is ``mu``. A do-intervention on target ``t`` cuts
``t``'s incoming edges and sets ``d_t`` to the cell's unperturbed value plus ``log(level)``;
CRISPRi levels are U(0.15, 0.35), CRISPRa U(3, 8), and 10 % of guides escape (level ~ 1).
Counts are negative binomial (gamma-Poisson) with mean ``size_factor * scale * exp(y)``.

Every generator is deterministic given ``seed``. Output format (see the API contract):
CSR float32 integer counts, ``obs["perturbation"]`` / ``obs["modality"]``,
``uns["planted_network"]`` and ``uns["synthetic"]`` (Hill screens also ``uns["planted_hill"]``).
Oracles for benchmark headroom, which know the planted network: :func:`planted_total_effects`
(log-linear screens) and :func:`planted_hill_predictor` (Hill screens).
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from anndata.io import sparse_dataset, write_elem
from scipy import sparse

CONTROL = "non-targeting"
CRISPRI_LEVEL = (0.15, 0.35)
CRISPRA_LEVEL = (3.0, 8.0)
ESCAPE_RATE = 0.10


def _symbols(text: str) -> tuple[str, ...]:
    """Split a whitespace-separated list of gene symbols."""
    return tuple(text.split())


FERROPTOSIS_GENES = _symbols(
    "GPX4 SLC7A11 SLC3A2 GCLC GCLM GSS AIFM2 GCH1 DHODH NFE2L2 KEAP1 FTH1 FTL FTMT SLC40A1 CP HSPB1 "
    "CISD1 ACSL3 TXNRD1 AKR1C1 ACSL4 LPCAT3 ALOX15 POR SAT1 TP53 TFRC TF STEAP3 SLC11A2 SLC39A14 "
    "SLC39A8 NCOA4 ATG5 ATG7 MAP1LC3B IREB2 HMOX1 VDAC2 VDAC3 CYBB NOX4 PTGS2 CHAC1 ATF4"
)
LMI_GENES = _symbols(
    "PSAP GBA1 GRN CTSB CTSD CTSL LAMP1 LAMP2 TFEB NPC1 NPC2 SCARB2 HEXA HEXB ATP6V1A ATP6AP1 ATP6AP2 "
    "TMEM106B LRRK2 CLN3 MCOLN1 ASAH1 PINK1 PRKN VDAC1 TOMM20 SOD2 CISD2 FXN TFAM MFN2 OPA1 NDUFS1 "
    "COX4I1 ATP5F1A LONP1 CD74 B2M HLA-A HLA-DRA C1QA C3 TREM2 TYROBP STING1 CGAS NFKB1 IRF3 IRF7 "
    "ISG15 IL1B TNF CXCL8 MTOR TLR4 ADCY10 SIRT3"
)
BACKGROUND_GENES = _symbols(
    "MAP2 TUBB3 SYP SNAP25 STMN2 GAP43 NEFL NEFM NEFH RBFOX3 SYN1 SYN2 SYT1 DLG4 GRIN1 GRIN2B GRIA1 "
    "GRIA2 GABRA1 GABBR1 SLC17A7 SLC17A6 SLC32A1 GAD1 GAD2 CAMK2A CAMK2B NRXN1 NRXN2 NLGN1 NLGN2 "
    "SHANK2 SHANK3 HOMER1 BDNF NTRK2 NTRK3 ELAVL3 ELAVL4 DCX TUBA1A MAPT APP APOE SNCA SCG2 CHGA CHGB "
    "VGF NSG1 NSG2 STMN1 STMN4 INA PRPH CELF4 RTN1 RTN3 UCHL1 ENO2 NRGN CALM1 CALM2 CALM3 VAMP2 STX1A "
    "STXBP1 CPLX1 CPLX2 NPTX1 NPTX2 KIF5A KIF5C ANK2 ANK3 SPTBN1 NCAM1 L1CAM CNTN1 NRCAM ROBO2 DPYSL2 "
    "DPYSL3 CRMP1 TUBB2A TUBB2B ATP1A3 ATP1B1 KCNQ2 SCN2A CACNA1A CACNB4 ACTB GAPDH TUBB PPIA EEF1A1 "
    "EEF2 RPLP0 RPL3 RPL4 RPL5 RPL7 RPL8 RPL10 RPL11 RPL13 RPL15 RPL18 RPL19 RPL21 RPL23 RPL27 RPL30 "
    "RPL32 RPL34 RPL35 RPL37 RPL41 RPS2 RPS3 RPS4X RPS5 RPS6 RPS8 RPS9 RPS11 RPS12 RPS13 RPS14 RPS15 "
    "RPS18 RPS19 RPS20 RPS23 RPS24 RPS27 RPS28 HSP90AB1 HSPA8 HSPA5 HSPD1 PGK1 LDHA LDHB ALDOA PKM "
    "ENO1 TPI1 PGAM1 GPI HPRT1 TBP YWHAZ UBC UBB SDHA PFN1 CFL1 MYL6 TMSB4X TMSB10 NPM1 NCL HNRNPA1 "
    "HNRNPK SRSF3 SF3B1 PTMA PPIB CANX CALR PDIA3 P4HB SEC61B SSR4 ATP5F1B COX7C NDUFA4 UQCRH CYCS "
    "PSMA1 PSMB1 PSMD2 EIF4A1 EIF3A EIF1 PABPC1 GNAS ARF1 RAB7A RAB5A CLTC AP2M1 DNM1 CDKN1A MDM2 "
    "GADD45A DDIT3 XBP1 ERN1 EIF2AK3 HIF1A VEGFA SLC2A1 SLC2A3 TXN PRDX1 PRDX2 GSTP1 NQO1 SQSTM1"
)

# (source, target, weight in log space): known biology planted in the demo network.
DEMO_KNOWN_EDGES = (
    ("KEAP1", "NFE2L2", -0.7),
    *(
        ("NFE2L2", t, w)
        for t, w in [
            ("SLC7A11", 0.7),
            ("GCLM", 0.6),
            ("GCLC", 0.5),
            ("FTH1", 0.5),
            ("FTL", 0.5),
            ("HMOX1", 0.7),
            ("NQO1", 0.6),
            ("TXNRD1", 0.4),
        ]
    ),
    ("NCOA4", "FTH1", -0.6),
    ("NCOA4", "FTL", -0.5),
    ("PSAP", "TFRC", -0.6),
    ("PSAP", "CTSD", 0.5),
    ("PSAP", "MTOR", 0.6),
    ("TP53", "SLC7A11", -0.6),
    ("TP53", "CDKN1A", 0.7),
    ("TP53", "MDM2", 0.5),
    ("TP53", "SAT1", 0.4),
    ("ATF4", "CHAC1", 0.8),
    ("ATF4", "SLC7A11", 0.5),
    ("ATF4", "DDIT3", 0.6),
    ("IREB2", "TFRC", 0.7),
    ("MFN2", "TLR4", -0.6),
    ("TLR4", "NFKB1", 0.6),
    *(("NFKB1", t, w) for t, w in [("IL1B", 0.7), ("TNF", 0.6), ("CXCL8", 0.5)]),
    ("ADCY10", "SIRT3", 0.7),
    ("SIRT3", "SOD2", 0.6),
    ("MTOR", "TFEB", -0.6),
    *(("TFEB", t, 0.5) for t in ("LAMP1", "ATP6V1A", "MCOLN1", "CTSB")),
    ("CGAS", "STING1", 0.7),
    ("STING1", "IRF3", 0.6),
    ("IRF3", "ISG15", 0.7),
    ("PINK1", "PRKN", 0.6),
    ("HIF1A", "VEGFA", 0.6),
    ("HIF1A", "SLC2A1", 0.5),
    ("TREM2", "TYROBP", 0.6),
)
DEMO_CRISPRI = _symbols(
    "PSAP NFE2L2 KEAP1 NCOA4 TP53 ATF4 IREB2 MFN2 ADCY10 MTOR TFEB CGAS TLR4 NFKB1 "
    "GPX4 ACSL4 SLC7A11 AIFM2 LPCAT3 HIF1A"
)
DEMO_CRISPRA = _symbols("SIRT3 PINK1 TFRC STING1 IRF3 GRN")
DEMO_COMBOS = (("IREB2", "PSAP"), ("NCOA4", "NFE2L2"), ("ATF4", "TP53"), ("ADCY10", "MFN2"))


@dataclass(frozen=True)
class PlantedNetwork:
    """A sparse signed DAG over ``genes``; edge ``k`` is ``source[k] -> target[k]`` (indices).

    Parameters
    ----------
    genes
        Gene symbols.
    source, target
        Integer gene indices of each edge.
    weight
        Signed effect of the source on the target.
    """

    genes: np.ndarray
    source: np.ndarray
    target: np.ndarray
    weight: np.ndarray

    def matrix(self) -> sparse.csr_array:
        """Return ``W`` as CSR (sources x targets)."""
        n = len(self.genes)
        return sparse.csr_array((self.weight, (self.source, self.target)), shape=(n, n))

    def levels(self) -> list[np.ndarray]:
        """Return gene indices grouped by longest-path depth from the roots (level 0 first)."""
        depth = np.zeros(len(self.genes), dtype=int)
        for _ in range(len(self.genes)):
            new = depth.copy()
            np.maximum.at(new, self.target, depth[self.source] + 1)
            if np.array_equal(new, depth):
                return [np.flatnonzero(depth == k) for k in range(depth.max() + 1)]
            depth = new
        msg = "The planted network has a cycle; a DAG is required."
        raise ValueError(msg)

    def to_uns(self) -> dict[str, np.ndarray]:
        """Return the ``uns["planted_network"]`` dict (symbols and float weights)."""
        return {
            "source": self.genes[self.source].astype(str),
            "target": self.genes[self.target].astype(str),
            "weight": self.weight.astype(float),
        }


MAX_TOTAL_EFFECT_GENES = 2000  # a dense genes x genes inverse; paper scale is far beyond it


def planted_total_effects(adata: ad.AnnData, *, genes=None) -> np.ndarray:
    """The planted network's total effect of each gene on every other (an oracle, for ceilings).

    On a log-linear screen ``d = d W + eps`` (``W[s, t]``: source on target), so a do-intervention
    that moves gene s by ``δ`` moves every gene t by ``δ · T[s, t]`` in log space, with
    ``T = (I − W)⁻¹`` (direct and indirect paths; ``T[s, s] = 1``). No predictor can know ``T``:
    benchmarks use it as an oracle reference (the true network effect, in log-mean space, of an
    unseen target).

    Parameters
    ----------
    adata
        A screen made by :func:`demo_screen`, :func:`toy_screen` or :func:`write_paper_screen`
        (``uns["planted_network"]``, ``uns["synthetic"]["kind"] == "log-linear"``).
    genes
        Gene symbols to order rows and columns by (e.g. a ``read_screen`` result's ``var_names``);
        default ``adata.var_names``. Paths through genes left out still count; genes outside the
        planted network get no effect (identity row).

    Returns
    -------
    numpy.ndarray
        (n, n) float64 ``T`` over ``genes``.

    Raises
    ------
    ValueError
        If ``adata`` has no planted network, is not log-linear (Hill screens have no constant total
        effect) or the network and ``genes`` hold more than ``MAX_TOTAL_EFFECT_GENES`` genes.
    """
    synthetic = adata.uns.get("synthetic", {})
    if "planted_network" not in adata.uns or synthetic.get("kind") != "log-linear":
        msg = (f"planted_total_effects needs a log-linear synthetic screen with uns['planted_network']; "
               f"this one has kind {synthetic.get('kind')!r}. Use demo_screen, toy_screen or "
               "write_paper_screen.")
        raise ValueError(msg)
    genes = adata.var_names if genes is None else genes
    return network_total_effects(adata.uns["planted_network"], genes=genes)


def network_total_effects(network: dict[str, Any], *, genes) -> np.ndarray:
    """Total effects ``T = (I − W)⁻¹`` of a log-linear network over ``genes`` (see planted_total_effects).

    Parameters
    ----------
    network
        ``source``, ``target``, ``weight`` arrays (``uns["planted_network"]``).
    genes
        Row and column order, as for :func:`planted_total_effects` (which returns the same matrix and
        raises the same ``ValueError`` on too many genes).
    """
    genes = np.asarray(genes).astype(str)
    # invert over every gene of the network (paths through genes not asked for still count), then subset
    ends = [np.asarray(network[k]).astype(str) for k in ("source", "target")]
    universe = np.unique(np.r_[ends[0], ends[1], genes])
    if len(universe) > MAX_TOTAL_EFFECT_GENES:
        msg = (f"planted_total_effects inverts a dense {len(universe)} x {len(universe)} matrix (the "
               f"network's genes and those asked for); at most {MAX_TOTAL_EFFECT_GENES} are allowed.")
        raise ValueError(msg)
    index = {g: i for i, g in enumerate(universe)}
    w = np.zeros((len(universe), len(universe)))
    for source, target, weight in zip(network["source"], network["target"], network["weight"], strict=True):
        w[index[str(source)], index[str(target)]] = float(weight)
    total = np.linalg.inv(np.eye(len(universe)) - w)
    keep = np.array([index[g] for g in genes], dtype=int)
    return total[np.ix_(keep, keep)]


# ----------------------------------------------------------------------------- design and clamps
def _design(
    rng: np.random.Generator, perts: list[tuple[str, str]], cells_per: np.ndarray, n_controls: int
) -> pd.DataFrame:
    """Return shuffled ``obs`` with ``perturbation`` and ``modality`` for every cell."""
    names, modalities = (np.array([p[i] for p in perts], dtype=object) for i in (0, 1))
    labels = np.r_[np.full(n_controls, CONTROL, dtype=object), np.repeat(names, cells_per)]
    mods = np.r_[np.where(np.arange(n_controls) % 2, "CRISPRa", "CRISPRi"), np.repeat(modalities, cells_per)]
    order = rng.permutation(len(labels))
    obs = pd.DataFrame({"perturbation": labels[order].astype(str), "modality": mods[order].astype(str)})
    obs.index = [f"cell{i:06d}" for i in range(len(obs))]
    return obs


def _clamps(rng: np.random.Generator, obs: pd.DataFrame, genes: np.ndarray):
    """Return ``(rows, cols, log_level)`` of every (cell, target) do-intervention in ``obs``."""
    index = {g: i for i, g in enumerate(genes)}
    rows, cols, mods = [], [], []
    for r, (label, mod) in enumerate(zip(obs["perturbation"], obs["modality"], strict=True)):
        if label == CONTROL:
            continue
        for target in label.split("+"):
            rows.append(r)
            cols.append(index[target])
            mods.append(mod)
    mods = np.array(mods)
    low, high = (
        np.where(mods == "CRISPRa", CRISPRA_LEVEL[0], CRISPRI_LEVEL[0]),
        np.where(mods == "CRISPRa", CRISPRA_LEVEL[1], CRISPRI_LEVEL[1]),
    )
    level = rng.uniform(low, high)
    escape = rng.random(len(level)) < ESCAPE_RATE
    level[escape] = np.exp(rng.normal(0.0, 0.05, escape.sum()))
    return np.array(rows, dtype=int), np.array(cols, dtype=int), np.log(level)


# ----------------------------------------------------------------------------- dynamics and counts
def _propagate(
    eps: np.ndarray,
    w: sparse.csr_array,
    levels: list[np.ndarray],
    clamps=None,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Solve ``d = d W + eps`` in topological order, vectorised over cells (rows of ``d`` and ``eps``).

    With ``clamps = (rows, cols, log_level)`` the clamped entries are fixed to
    ``base[rows, cols] + log_level`` (incoming edges cut) before their descendants are computed.
    """
    d = eps.copy()
    regs = np.flatnonzero(np.diff(w.indptr))
    w_reg = w[regs].tocsc()

    def clamp():
        if clamps is not None:
            d[clamps[0], clamps[1]] = base[clamps[0], clamps[1]] + clamps[2]

    clamp()
    for idx in levels[1:]:
        d[:, idx] = eps[:, idx] + np.asarray(d[:, regs] @ w_reg[:, idx])
        clamp()
    return d


def _nb_counts(rng: np.random.Generator, mean: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Negative-binomial counts (variance ``mean + dispersion * mean**2``) via gamma-Poisson."""
    shape = 1.0 / dispersion
    return rng.poisson(mean * rng.gamma(shape, 1.0 / shape, size=mean.shape)).astype(np.float32)


def _size_factors(rng: np.random.Generator, n: int, sd: float = 0.25) -> np.ndarray:
    """Per-cell log-normal size factors with mean 1."""
    return np.exp(rng.normal(-(sd**2) / 2, sd, n))


@dataclass(frozen=True)
class _LogLinear:
    """Gene parameters of a log-linear screen: network, baseline log means, count model."""

    net: PlantedNetwork
    mu: np.ndarray
    dispersion: np.ndarray
    library: float = 4500.0
    noise_sd: float = 0.3

    def counts(self, rng: np.random.Generator, obs: pd.DataFrame) -> sparse.csr_matrix:
        """Simulate CSR float32 counts for the cells in ``obs``."""
        w, levels = self.net.matrix(), self.net.levels()
        eps = rng.normal(0.0, self.noise_sd, (len(obs), len(self.mu))).astype(np.float32)
        d0 = _propagate(eps, w, levels)
        clamps = _clamps(rng, obs, self.net.genes)
        d = _propagate(eps, w, levels, clamps, base=d0) if len(clamps[0]) else d0
        scale = self.library / np.exp(self.mu).sum()
        mean = _size_factors(rng, len(obs))[:, None] * scale * np.exp(self.mu + d)
        return sparse.csr_matrix(_nb_counts(rng, mean, self.dispersion))


def _anndata(x: sparse.csr_matrix, obs: pd.DataFrame, net: PlantedNetwork, synthetic: dict) -> ad.AnnData:
    """Assemble the contract's AnnData."""
    var = pd.DataFrame(index=pd.Index(net.genes.astype(str)))
    uns = {"planted_network": net.to_uns(), "synthetic": synthetic}
    return ad.AnnData(X=x, obs=obs, var=var, uns=uns)


def _synthetic(generator: str, seed: int, obs: pd.DataFrame, n_genes: int, kind: str, **extra) -> dict:
    """The ``uns["synthetic"]`` dict (h5ad-safe scalars only)."""
    n_perts = obs.loc[obs["perturbation"] != CONTROL, "perturbation"].nunique()
    return {
        "generator": generator,
        "seed": int(seed),
        "n_cells": len(obs),
        "n_genes": int(n_genes),
        "kind": kind,
        "n_perturbations": int(n_perts),
        **extra,
    }


def _baseline(rng: np.random.Generator, n: int, *, sd: float, dispersion=(0.2, 0.5)):
    """Return log baseline means (``sd`` controls expression spread) and per-gene dispersions."""
    return rng.normal(0.0, sd, n), rng.uniform(*dispersion, n)


def _signed_weights(rng: np.random.Generator, n: int, low: float = 0.3, high: float = 0.8) -> np.ndarray:
    """Weights with ``|w|`` in ``[low, high]`` and random signs."""
    return rng.uniform(low, high, n) * rng.choice([-1.0, 1.0], n)


# ----------------------------------------------------------------------------- toy
def toy_screen(*, n_genes: int = 8, n_cells: int = 120, seed: int = 0) -> ad.AnnData:
    """Tiny CRISPRi screen for unit tests.

    Parameters
    ----------
    n_genes
        Number of genes ``G0..G{n-1}`` (at least 4).
    n_cells
        Number of cells; a quarter are non-targeting controls.
    seed
        Random seed.

    Returns
    -------
    AnnData
        Chain edges ``G(2k) -> G(2k+1)``; the strong ``G0 -> G1`` has weight +0.8. Every gene but
        the last is knocked down (CRISPRi).
    """
    if n_genes < 4:
        msg = f"toy_screen needs n_genes >= 4, got {n_genes}; pass a larger n_genes."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{i}" for i in range(n_genes)])
    src = np.arange(0, n_genes - 1, 2)
    weight = np.where(src == 0, 0.8, np.where(src % 4 == 0, 0.5, -0.5))
    net = PlantedNetwork(genes, src, src + 1, weight)
    targets = list(genes[:-1])
    n_controls = n_cells // 4
    cells_per = np.full(len(targets), (n_cells - n_controls) // len(targets))
    cells_per[: (n_cells - n_controls) % len(targets)] += 1
    obs = _design(rng, [(t, "CRISPRi") for t in targets], cells_per, n_controls)
    obs["modality"] = "CRISPRi"
    sim = _LogLinear(net, *_baseline(rng, n_genes, sd=0.5), library=4000.0)
    synthetic = _synthetic("toy_screen", seed, obs, n_genes, "log-linear")
    return _anndata(sim.counts(rng, obs), obs, net, synthetic)


# ----------------------------------------------------------------------------- demo
def _topological_order(n: int, edges: list[tuple[int, int]], priority: np.ndarray) -> np.ndarray:
    """Kahn's algorithm, lowest ``priority`` first among ready genes; returns rank of each gene."""
    children = [[] for _ in range(n)]
    indeg = np.zeros(n, dtype=int)
    for s, t in edges:
        children[s].append(t)
        indeg[t] += 1
    heap = [(priority[i], i) for i in range(n) if indeg[i] == 0]
    heapq.heapify(heap)
    rank = np.full(n, -1)
    for k in range(n):
        _, i = heapq.heappop(heap)
        rank[i] = k
        for t in children[i]:
            indeg[t] -= 1
            if indeg[t] == 0:
                heapq.heappush(heap, (priority[t], t))
    return rank


def _demo_network(rng: np.random.Generator, genes: np.ndarray, regulators: np.ndarray) -> PlantedNetwork:
    """Known edges plus 2-3 out-edges per regulator to later genes (a DAG)."""
    index = {g: i for i, g in enumerate(genes)}
    known = [(index[s], index[t], w) for s, t, w in DEMO_KNOWN_EDGES]
    is_reg = np.isin(np.arange(len(genes)), regulators)
    priority = np.where(is_reg, 0.6 * rng.random(len(genes)), 0.3 + rng.random(len(genes)))
    rank = _topological_order(len(genes), [(s, t) for s, t, _ in known], priority)
    src, tgt = [s for s, _, _ in known], [t for _, t, _ in known]
    for r in regulators:
        n_extra = max(int(rng.integers(2, 4)) - src.count(r), 0)
        done = [t for s, t in zip(src, tgt, strict=True) if s == r]
        pool = np.setdiff1d(np.flatnonzero(rank > rank[r]), done)
        for t in rng.choice(pool, min(n_extra, len(pool)), replace=False):
            src.append(int(r))
            tgt.append(int(t))
    weight = np.r_[[w for *_, w in known], _signed_weights(rng, len(src) - len(known))]
    return PlantedNetwork(genes, np.array(src), np.array(tgt), weight)


def _demo_perturbations(
    rng: np.random.Generator,
    genes: np.ndarray,
    regulators: np.ndarray,
    n_crispri: int = 40,
    n_crispra: int = 20,
) -> list[tuple[str, str]]:
    """Key biology targets plus random regulators (and a few leaf genes); then combinations."""
    chosen = set(DEMO_CRISPRI) | set(DEMO_CRISPRA)
    extra_regs = [g for g in genes[regulators] if g not in chosen]
    leaves = [g for g in FERROPTOSIS_GENES + LMI_GENES if g not in chosen and g not in genes[regulators]]
    n_fill = n_crispri + n_crispra - len(chosen)
    n_leaf = 6
    pool = list(rng.choice(extra_regs, n_fill - n_leaf, replace=False)) + list(
        rng.choice(leaves, n_leaf, replace=False)
    )
    pool = [pool[i] for i in rng.permutation(len(pool))]
    k = n_crispri - len(DEMO_CRISPRI)
    crispri, crispra = [*DEMO_CRISPRI, *pool[:k]], [*DEMO_CRISPRA, *pool[k:]]
    singles = [(str(g), "CRISPRi") for g in crispri] + [(str(g), "CRISPRa") for g in crispra]
    return singles + [("+".join(sorted(c)), "CRISPRi") for c in DEMO_COMBOS]


def demo_genes(n_genes: int = 300) -> np.ndarray:
    """Module genes (ferroptosis and lysosomal-mitochondrial-immune) then background genes."""
    module = list(dict.fromkeys(FERROPTOSIS_GENES + LMI_GENES))
    planted = {g for edge in DEMO_KNOWN_EDGES for g in edge[:2]} | set(DEMO_CRISPRI) | set(DEMO_CRISPRA)
    background = [g for g in dict.fromkeys(BACKGROUND_GENES) if g not in set(module)]
    background = sorted(background, key=lambda g: g not in planted)  # stable: planted ones first
    return np.array((module + background)[:n_genes])


def demo_screen(*, seed: int = 0, n_controls: int = 600) -> ad.AnnData:
    """The app's demo screen: ~300 real gene symbols, ~4,000 cells, a planted network.

    Parameters
    ----------
    seed
        Random seed (the shipped asset uses 0).
    n_controls
        Non-targeting cells (the shipped asset has 600). The other random draws (gene means,
        perturbed cells) change with it; to compare control counts, subsample the controls of one
        screen (``benchmarks/unseen_targets.py --demo-controls`` does).

    Returns
    -------
    AnnData
        60 single-gene targets (40 CRISPRi, 20 CRISPRa), 4 CRISPRi combinations, ``n_controls`` controls
        split between both modalities, 48-59 cells per perturbation; log-linear dynamics with
        known ferroptosis / lysosomal biology planted (see ``DEMO_KNOWN_EDGES``).
    """
    if n_controls < 20:
        msg = f"demo_screen needs n_controls >= 20 (training and reference controls); got {n_controls}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    genes = demo_genes()
    index = {g: i for i, g in enumerate(genes)}
    known_regs = {s for s, _, _ in DEMO_KNOWN_EDGES} | set(DEMO_CRISPRI) | set(DEMO_CRISPRA)
    others = np.setdiff1d(np.arange(len(genes)), [index[g] for g in known_regs])
    regulators = np.r_[sorted(index[g] for g in known_regs), rng.choice(others, 60, replace=False)]
    net = _demo_network(rng, genes, regulators)
    perts = _demo_perturbations(rng, genes, regulators)
    obs = _design(rng, perts, rng.integers(48, 60, len(perts)), n_controls)
    sim = _LogLinear(net, *_baseline(rng, len(genes), sd=1.0), library=3500.0)
    synthetic = _synthetic(
        "demo_screen", seed, obs, len(genes), "log-linear", noise_sd=sim.noise_sd, library=sim.library
    )
    return _anndata(sim.counts(rng, obs), obs, net, synthetic)


def demo_path() -> Path:
    """Path of the shipped demo file ``assets/demo_screen.h5ad``."""
    return Path(__file__).resolve().parent.parent / "assets" / "demo_screen.h5ad"


REAL_SCREEN_FILE = "schraivogel2020_tapseq_k562_crispri.h5ad"
REAL_SCREEN_LABEL = "Real screen: Schraivogel et al. 2020, K562 TAP-seq"


def real_screen_path() -> Path:
    """Path of the shipped real screen ``assets/schraivogel2020_tapseq_k562_crispri.h5ad``.

    Schraivogel et al. 2020 (Nat Methods 17:629), TAP-seq CRISPRi in K562 cells: 18,959 cells x
    72 genes, 14 targets + non-targeting. Provenance and the MIT licence of the source files are in
    ``assets/schraivogel2020_README.md``.
    """
    return Path(__file__).resolve().parent.parent / "assets" / REAL_SCREEN_FILE


def load_demo() -> ad.AnnData:
    """Read the shipped demo screen; regenerate it with :func:`demo_screen` if the file is missing."""
    path = demo_path()
    return ad.read_h5ad(path) if path.exists() else demo_screen()


def write_demo(path: str | Path | None = None) -> Path:
    """Write :func:`demo_screen` (gzip) to ``path`` (default :func:`demo_path`) atomically."""
    path = Path(path) if path is not None else demo_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        demo_screen().write_h5ad(tmp, compression="gzip")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- Hill kinetics
#: The hubs' gates of :func:`hill_screen` (``redundant=True``): a sum, a product, a noisy-OR of Hill terms.
GATES = ("or", "and", "backup")


def _hill(x: np.ndarray, h: np.ndarray, n: float, activating: np.ndarray) -> np.ndarray:
    """Activating ``x^n / (h^n + x^n)`` or repressing ``h^n / (h^n + x^n)`` Hill function."""
    act = x**n / (h**n + x**n)
    return np.where(activating, act, 1.0 - act)


def _hill_solve(basal, parents, k, h, n, noise, clamps=None, base=None, gates=None) -> np.ndarray:
    """Steady state ``x_i = production_i`` (decay 1) gene by gene in index (topological) order.

    Entries of ``h`` that are NaN are filled in place with the gene's mean level as soon as it is
    computed (run once without noise: SERGIO's half-response at the regulator's own level). ``gates``
    maps a gene to its gate: ``"and"`` is produced at ``basal + Σ|K| · Π hill`` (every regulator
    needed), ``"backup"`` at ``basal + Σ|K| · (1 − Π (1 − hill))`` (any regulator suffices, a noisy-OR:
    each is the others' backup); every other gene at ``basal + Σ |K| hill``.
    """
    x = np.zeros_like(noise)
    gates = gates or {}
    for i in range(noise.shape[1]):
        terms = [_hill(x[:, j], h[j], n, kij > 0) for j, kij in zip(parents[i], k[i], strict=True)]
        if gates.get(i) == "and":
            prod = basal[i] + np.abs(k[i]).sum() * np.prod(terms, axis=0)
        elif gates.get(i) == "backup":
            prod = basal[i] + np.abs(k[i]).sum() * (1.0 - np.prod([1.0 - t for t in terms], axis=0))
        else:
            prod = np.full(noise.shape[0], basal[i])
            for kij, term in zip(k[i], terms, strict=True):
                prod = prod + abs(kij) * term
        x[:, i] = prod * noise[:, i]
        if np.isnan(h[i]):
            h[i] = max(float(x[:, i].mean()), 1e-3)
        if clamps is not None:
            sel = clamps[1] == i
            x[clamps[0][sel], i] = base[clamps[0][sel], i] * np.exp(clamps[2][sel])
    return x


def _hill_combinations(rng: np.random.Generator, perts: list[tuple[str, str]], genes: np.ndarray,
                       parents: list[np.ndarray], n: int) -> list[tuple[str, str]]:
    """``n`` CRISPRi doubles of single CRISPRi targets: co-regulators of one gene first, then random."""
    index = {g: i for i, g in enumerate(genes)}
    crispri = sorted(index[g] for g, mod in perts if mod == "CRISPRi")
    shared = {tuple(sorted(pair)) for p in parents for pair in _pairs_within(np.intersect1d(p, crispri))}
    chosen = [tuple(pair) for pair in rng.permutation(sorted(shared))] if shared else []
    others = [(a, b) for i, a in enumerate(crispri) for b in crispri[i + 1:] if (a, b) not in shared]
    chosen += [others[i] for i in rng.permutation(len(others))]
    if len(chosen) < n:
        msg = f"n_combinations={n} exceeds the {len(chosen)} pairs of CRISPRi targets; ask for fewer."
        raise ValueError(msg)
    return [("+".join(sorted((str(genes[a]), str(genes[b])))), "CRISPRi") for a, b in chosen[:n]]


def _pairs_within(members: np.ndarray) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for i, a in enumerate(members) for b in members[i + 1:]]


def _hill_triads(rng: np.random.Generator, perts: list[tuple[str, str]], genes: np.ndarray,
                 n: int) -> tuple[list[tuple[str, str]], list[tuple[int, int, int]]]:
    """``n`` disjoint triads of single CRISPRi targets and their three doubles each (AB, AC, BC).

    Targets among the last 15 % of genes are left out (a hub must come after its triad), and the
    triads are returned latest first, so that those with the fewest later genes choose their hub first.
    """
    index = {g: i for i, g in enumerate(genes)}
    crispri = [index[g] for g, mod in perts if mod == "CRISPRi" and index[g] < 0.85 * len(genes)]
    crispri = rng.permutation(sorted(crispri))
    if 3 * n > len(crispri):
        msg = (f"shared_hubs needs {3 * n} distinct CRISPRi targets for {n} triads (n_combinations={3 * n}); "
               f"the screen has {len(crispri)} early enough to have a later hub. Ask for at most "
               f"{3 * (len(crispri) // 3)} doubles.")
        raise ValueError(msg)
    triads = sorted((tuple(sorted(int(t) for t in crispri[3 * i: 3 * i + 3])) for i in range(n)),
                    key=lambda t: -t[-1])
    doubles = [(f"{genes[a]}+{genes[b]}", "CRISPRi") for t in triads for a, b in _pairs_within(np.array(t))]
    return doubles, triads


def _make_redundant(rng: np.random.Generator, groups: list[tuple[int, ...]], genes: np.ndarray, taken: set,
                    basal: np.ndarray, parents: list, k: list) -> list[str]:
    """Rewire the network in place so that each group of targets (a double's two, or a triad's three)
    are the only activators (K = 3 each) of one fresh later gene, which in turn regulates up to four
    later genes. The hub is an OR gate (any arm keeps it on) unless :func:`_hill_solve` is told it is
    an AND gate. Returns the hub genes (one per group that found a free later gene)."""
    hubs = []
    for group in groups:
        last = max(group)
        free = [i for i in range(last + 1, len(genes)) if i not in taken]
        if not free:
            continue
        hub = int(rng.choice(free))
        taken.add(hub)
        parents[hub], k[hub] = np.array(sorted(group)), np.full(len(group), 3.0)
        basal[hub] = 0.02
        later = [i for i in range(hub + 1, len(genes)) if i not in taken]
        for child in rng.choice(later, min(4, len(later)), replace=False) if later else []:
            parents[child] = np.r_[parents[child], hub].astype(int)
            k[child] = np.r_[k[child], rng.uniform(1.0, 4.0) * rng.choice([-1.0, 1.0])]
        hubs.append(str(genes[hub]))
    return hubs


def hill_screen(*, n_genes: int = 120, n_cells: int = 4000, seed: int = 0, n_combinations: int = 0,
                redundant: bool = False, n_controls: int | None = None, gate: str = "or",
                shared_hubs: bool = False) -> ad.AnnData:
    """A screen whose dynamics are not the model's form: SERGIO-style Hill kinetics.

    Genes are in topological order; the first 15 % are master regulators (basal production
    only); every other gene has 1-3 regulators among earlier genes (a pool of ~25 % of genes).
    Production is ``basal_i + sum_j |K_ij| hill(x_j; h_j, 2)`` with ``h_j`` the regulator's
    noiseless level, times per-cell log-normal noise (sd 0.3); decay is 1. A do-intervention
    multiplies the target's own (unperturbed) level by the knockdown/activation level and
    propagates downstream. Counts are negative binomial with per-gene capture efficiency.

    Parameters
    ----------
    n_genes
        Number of genes ``HG001...``.
    n_cells
        Number of cells; ~12 % are controls.
    seed
        Random seed.
    n_combinations
        Double CRISPRi perturbations ``A+B`` of two single targets, added to the singles (which
        are unchanged); pairs that share a regulated gene come first, so that their effects meet
        in one production term (where Hill kinetics are not additive in log space). 0 (default)
        gives exactly the screen without combinations.
    redundant
        Give every double a genuine interaction (needs ``n_combinations``): its two targets become
        the only activators of one further gene (``K = 3`` each, basal 0.02: an OR gate, so either
        arm alone keeps it half on and the double shuts it off), and that gene regulates up to four
        later genes. In log space the double then moves the hub and its targets far more than the
        sum of its arms: the synergy an additive model cannot predict. The hubs are listed, comma-separated,
        in ``uns["synthetic"]["redundant_hubs"]``. False (default) leaves the screen unchanged.
    gate
        With ``redundant``: ``"or"`` (default, the OR gate above) or ``"and"``: each hub needs both of
        its activators, production ``basal + 6 · hill(A) · hill(B)`` (1.52 at control, half the OR
        gate's 3.02), so either arm alone shuts most of it. Were it not for the basal production and
        the saturation of the Hill terms, the arms would add in log space at the hub (a product);
        with them the double shuts it less than that sum, and in expression far more than the sum of
        the arms' changes. Scored in log1p expression, the interaction is close to the arms' fold
        changes multiplied (``metrics.multiplicative_counts_post``: log1p's pseudo-count makes a
        product of folds read as an interaction at genes of few counts). The hubs are listed in
        ``uns["planted_hill"]["and_genes"]``; ``uns["synthetic"]["gate"]`` is ``"and"``. The network,
        design and random draws are those of ``gate="or"``.
        ``"backup"``: each activator alone keeps most of the hub on (a noisy-OR, each the other's
        backup), production ``basal + 6 · (1 − (1 − hill(A)) · (1 − hill(B)))`` (4.52 at control), so
        one arm shuts about a third of it and the double nearly all: more than the sum of the arms'
        changes in expression and more than their folds multiplied, an interaction that neither the
        count-space nor the fold-space no-model combination predicts. Listed in
        ``uns["planted_hill"]["backup_genes"]``; ``uns["synthetic"]["gate"]`` is ``"backup"``; network,
        design and draws those of ``gate="or"``.
    shared_hubs
        With ``redundant`` and ``gate="and"`` or ``"backup"``: the doubles come in triads that share
        one hub, so that trained doubles carry what a held-out one needs. ``n_combinations / 3``
        disjoint triads of single CRISPRi targets (A, B, C) each give the doubles A+B, A+C and B+C, and
        one hub needs all three (production ``basal + 9 · hill(A) · hill(B) · hill(C)``, or with
        ``"backup"`` ``basal + 9 · (1 − Π (1 − hill))``). Training on A+B and A+C then shows the hub at
        two corners of the plane that B+C reaches. The triads are listed as ``"A+B+C"``,
        comma-separated, in ``uns["synthetic"]["shared_hub_triads"]`` (hub order: the
        ``redundant_hubs``). False (default) leaves the AND or backup screen as above. The network and
        draws differ from ``gate="and"`` from the doubles on.
    n_controls
        Number of control cells instead of ~12 % of ``n_cells``. The planted network, the
        perturbations and their cell counts (``n_cells`` minus that 12 %) stay as they are; every
        cell's values are drawn anew (the cells are shuffled together), so compare control counts by
        subsampling one screen's controls. Recorded in ``uns["synthetic"]["n_controls"]``. None
        (default) gives exactly the screen without it.

    Returns
    -------
    AnnData
        Planted weights are ``sign * K``; ~40 % of genes perturbed (2/3 CRISPRi, 1/3 CRISPRa).
        ``uns["planted_hill"]`` holds every gene's basal production (``genes``, ``basal``), which with
        the network is the whole noise-free dynamics (:func:`planted_hill_predictor`).
    """
    rng = np.random.default_rng(seed)
    genes = np.array([f"HG{i + 1:03d}" for i in range(n_genes)])
    n_master = max(2, int(0.15 * n_genes))
    pool = np.r_[np.arange(n_master), rng.choice(np.arange(n_master, n_genes), n_genes // 10, replace=False)]
    basal = np.r_[rng.uniform(1.0, 4.0, n_master), rng.uniform(0.0, 0.3, n_genes - n_master)]
    parents, k = [np.array([], int)] * n_master, [np.array([])] * n_master
    for i in range(n_master, n_genes):
        cand = pool[pool < i]
        parents.append(rng.choice(cand, min(int(rng.integers(1, 4)), len(cand)), replace=False))
        k.append(rng.uniform(1.0, 4.0, len(parents[-1])) * rng.choice([-1.0, 1.0], len(parents[-1])))
    h = np.full(n_genes, np.nan)
    _hill_solve(basal, parents, k, h, 2.0, np.ones((1, n_genes)))  # fills h with noiseless levels
    regs = np.unique(np.concatenate(parents))
    if redundant and not n_combinations:
        msg = "redundant=True rewires the doubles' shared gene; ask for doubles too (n_combinations > 0)."
        raise ValueError(msg)
    if gate not in GATES or (gate != "or" and not redundant):
        msg = (f"gate must be one of {GATES} ('and' and 'backup' with redundant=True), got {gate!r} "
               f"(redundant={redundant}).")
        raise ValueError(msg)
    if shared_hubs and (gate == "or" or n_combinations % 3):
        msg = (f"shared_hubs=True needs redundant=True, gate 'and' or 'backup' and n_combinations a "
               f"multiple of 3 (three doubles per triad); got gate={gate!r}, redundant={redundant}, "
               f"n_combinations={n_combinations}.")
        raise ValueError(msg)
    if n_controls is not None and n_controls < 20:
        msg = f"hill_screen needs n_controls >= 20 (training and reference controls); got {n_controls}."
        raise ValueError(msg)
    n_pert = round(0.4 * n_genes)
    targets = np.r_[rng.permutation(regs)[: int(0.7 * len(regs))]]
    rest = np.setdiff1d(np.arange(n_genes), targets)
    targets = np.r_[targets, rng.choice(rest, max(n_pert - len(targets), 0), replace=False)][:n_pert]
    perts = [(str(genes[t]), "CRISPRi" if i % 3 else "CRISPRa") for i, t in enumerate(targets)]
    if n_combinations:
        draws = np.random.default_rng([seed, 1])
        if shared_hubs:
            doubles, groups = _hill_triads(draws, perts, genes, n_combinations // 3)
        else:
            doubles = _hill_combinations(draws, perts, genes, parents, n_combinations)
            groups = [tuple(sorted(int(np.flatnonzero(genes == g)[0]) for g in label.split("+")))
                      for label, _ in doubles]
        perts += doubles
    hubs: list[str] = []
    if redundant:
        taken = {int(t) for t in targets}
        hubs = _make_redundant(np.random.default_rng([seed, 2]), groups, genes, taken, basal, parents, k)
        if shared_hubs and len(hubs) < len(groups):
            msg = (f"shared_hubs found a later hub for {len(hubs)} of {len(groups)} triads at "
                   f"n_genes={n_genes}; ask for fewer doubles or more genes.")
            raise ValueError(msg)
        h = np.full(n_genes, np.nan)
        hub_index = [int(np.flatnonzero(genes == hub)[0]) for hub in hubs]
        gates = {i: gate for i in hub_index} if gate != "or" else {}
        _hill_solve(basal, parents, k, h, 2.0, np.ones((1, n_genes)), gates=gates)  # rewired levels
    else:
        gates = {}
    n_perturbed = n_cells - int(0.12 * n_cells)
    cells_per = np.full(len(perts), n_perturbed // len(perts))
    cells_per[: n_perturbed % len(perts)] += 1
    obs = _design(rng, perts, cells_per, int(0.12 * n_cells) if n_controls is None else n_controls)
    noise = np.exp(rng.normal(0.0, 0.3, (len(obs), n_genes)))
    x0 = _hill_solve(basal, parents, k, h, 2.0, noise, gates=gates)
    x = _hill_solve(basal, parents, k, h, 2.0, noise, _clamps(rng, obs, genes), base=x0, gates=gates)
    capture = np.exp(rng.normal(0.0, 0.8, n_genes))
    scale = 4000.0 / (h * capture).sum()
    mean = _size_factors(rng, len(obs))[:, None] * scale * capture * x
    counts = sparse.csr_matrix(_nb_counts(rng, mean, rng.uniform(0.2, 0.5, n_genes)))
    src = np.concatenate(parents)
    tgt = np.concatenate([np.full(len(p), i) for i, p in enumerate(parents)])
    net = PlantedNetwork(genes, src.astype(int), tgt.astype(int), np.concatenate(k).astype(float))
    extra = {"redundant_hubs": ",".join(hubs)} if redundant else {}
    if gate != "or":
        extra["gate"] = gate
    if shared_hubs:
        extra["shared_hub_triads"] = ",".join("+".join(str(genes[t]) for t in g) for g in groups)
    if n_controls is not None:
        extra["n_controls"] = int(n_controls)
    synthetic = _synthetic("hill_screen", seed, obs, n_genes, "hill", hill_n=2.0, **extra)
    adata = _anndata(counts, obs, net, synthetic)
    adata.uns["planted_hill"] = {"genes": genes.astype(str), "basal": basal.astype(float)}
    if gate != "or":
        adata.uns["planted_hill"][f"{gate}_genes"] = genes[hub_index].astype(str)
    return adata


def planted_hill_predictor(adata: ad.AnnData, *, base, genes) -> Callable[[np.ndarray], np.ndarray]:
    """The planted Hill dynamics as a predictor of post-states (an oracle, for headroom).

    Knows what no method can: the network, its Hill constants and every gene's basal production.
    A pre-state is read as do-interventions on the genes where it differs from ``base`` (by more than
    1e-4 in log expression, so float32 rounding of the same state is not one): each such
    gene's expression is scaled by ``expm1(pre) / expm1(base)`` (the knock-down or activation it
    carries) and the noise-free steady state is solved with those genes clamped at that fold of
    their noiseless level, as :func:`hill_screen` does per cell. The prediction is ``base`` moved by
    the steady state's fold change of every gene, ``log1p(expm1(base) · x / x₀)``; the clamped genes
    keep their input level. So a double's interaction is the mean-field dynamics' own (Hill
    saturation, gates, paths that meet downstream), without cell noise, the spread of knock-downs,
    capture or count noise: benchmarks score it as an oracle beside a model's interaction (it knows
    the network, which no method does), never as a result a method reached, and not as a strict
    bound.

    Parameters
    ----------
    adata
        The :func:`hill_screen` itself (``uns["planted_hill"]`` and ``uns["planted_network"]``;
        :func:`lazynet_core.data.read_screen` keeps neither).
    base
        The control state (log1p-normalised, one value per entry of ``genes``), e.g. the training
        control mean ``Pairs.control_mean("train")``.
    genes
        Gene symbols of ``base`` and of the predictor's input and output columns (a subset of the
        screen's genes in any order; paths through genes left out still count).

    Returns
    -------
    callable
        ``predict(pre)``: (n, len(genes)) or (len(genes),) log states → predicted post-states, float32.

    Raises
    ------
    ValueError
        If ``adata`` is not a Hill screen, or ``genes`` names a gene the screen does not have.
    """
    hill = adata.uns.get("planted_hill")
    if hill is None or "planted_network" not in adata.uns:
        kind = adata.uns.get("synthetic", {}).get("kind")
        msg = (f"planted_hill_predictor needs a hill_screen (uns['planted_hill']); this screen has kind "
               f"{kind!r}. Generate one with datasets.hill_screen().")
        raise ValueError(msg)
    universe = np.asarray(hill["genes"]).astype(str)
    index = {g: i for i, g in enumerate(universe)}
    genes = np.asarray(genes).astype(str)
    missing = [g for g in genes if g not in index]
    if missing:
        msg = (f"planted_hill_predictor: gene(s) {missing[:5]} are not in this Hill screen's "
               f"{len(universe)} genes.")
        raise ValueError(msg)
    cols = np.array([index[g] for g in genes], dtype=int)
    basal = np.asarray(hill["basal"], dtype=float)
    network = adata.uns["planted_network"]
    source = np.array([index[str(g)] for g in network["source"]], dtype=int)
    target = np.array([index[str(g)] for g in network["target"]], dtype=int)
    weight = np.asarray(network["weight"], dtype=float)
    parents = [source[target == i] for i in range(len(universe))]
    k = [weight[target == i] for i in range(len(universe))]
    n = float(adata.uns.get("synthetic", {}).get("hill_n", 2.0))
    gates = {index[str(g)]: gate for gate in GATES[1:] for g in hill.get(f"{gate}_genes", [])}
    h = np.full(len(universe), np.nan)
    x0 = _hill_solve(basal, parents, k, h, n, np.ones((1, len(universe))), gates=gates)[0]
    base = np.asarray(base, dtype=np.float64)
    base32 = base.astype(np.float32)

    def predict(pre: np.ndarray) -> np.ndarray:
        pre = np.asarray(pre, dtype=np.float32)
        single = pre.ndim == 1
        pre2 = np.atleast_2d(pre)
        # an intervention moves a gene by far more than float32 rounding of the same state (~1e-6)
        rows, where = np.nonzero(np.abs(pre2 - base32) > 1e-4)
        fold = np.expm1(pre2[rows, where].astype(np.float64)) / np.maximum(np.expm1(base[where]), 1e-6)
        clamps = (rows, cols[where], np.log(np.clip(fold, 1e-6, 1e6)))
        x = _hill_solve(basal, parents, k, h, n, np.ones((len(pre2), len(universe))), clamps,
                        base=np.broadcast_to(x0, (len(pre2), len(universe))), gates=gates)
        post = np.log1p(np.expm1(base)[None, :] * x[:, cols] / x0[cols])
        post[rows, where] = pre2[rows, where]
        post = post.astype(np.float32)
        return post[0] if single else post

    return predict


# ----------------------------------------------------------------------------- paper scale
def paper_screen_spec(
    *,
    n_cells: int = 53_000,
    n_genes: int = 18_000,
    n_perturbations: int = 1_000,
    n_combos: int = 20,
    control_fraction: float = 0.1,
    n_regulators: int = 2_000,
    out_degree: float = 2.0,
    baseline_sd: float = 2.0,
    library: float = 4500.0,
) -> dict:
    """Parameters of the paper-scale screen (defaults: the preprint's 53k cells x 18k genes).

    Returns
    -------
    dict
        The keyword arguments, validated; stored in ``uns["synthetic"]`` by :func:`write_paper_screen`.
    """
    spec = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_perturbations": n_perturbations,
        "n_combos": n_combos,
        "control_fraction": control_fraction,
        "n_regulators": min(n_regulators, n_genes // 2),
        "out_degree": out_degree,
        "baseline_sd": baseline_sd,
        "library": library,
    }
    if n_perturbations > spec["n_regulators"] or n_cells < 2 * (n_perturbations + n_combos):
        msg = (
            f"paper_screen_spec got n_perturbations={n_perturbations} with n_genes={n_genes}, "
            f"n_cells={n_cells}; need n_perturbations <= min(n_regulators, n_genes // 2) and "
            f">= 2 cells per perturbation. Lower n_perturbations or raise the sizes."
        )
        raise ValueError(msg)
    return spec


def _paper_genes(n_genes: int) -> np.ndarray:
    """Module and background symbols first, then ``SYN00001``-style names."""
    real = list(demo_genes(10_000))[:n_genes]
    return np.array(real + [f"SYN{i:05d}" for i in range(1, n_genes - len(real) + 1)])


def _paper_network(rng: np.random.Generator, genes: np.ndarray, spec: dict) -> PlantedNetwork:
    """Random sparse DAG in a random gene order; ``n_regulators`` (the first module genes among them)
    with ~``out_degree`` targets each on average."""
    n, n_reg = len(genes), spec["n_regulators"]
    order = rng.permutation(n)
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    n_module = min(len(set(FERROPTOSIS_GENES + LMI_GENES)), n_reg // 4)  # module genes regulate too
    regs = np.r_[np.arange(n_module), n_module + rng.choice(n - n_module, n_reg - n_module, replace=False)]
    n_edges = round(spec["out_degree"] * n_reg)
    src = rng.choice(regs, n_edges)
    tgt = rng.integers(0, n, n_edges)
    swap = rank[src] > rank[tgt]
    src, tgt = np.where(swap, tgt, src), np.where(swap, src, tgt)
    keep = src != tgt
    pairs = np.unique(np.c_[src[keep], tgt[keep]], axis=0)
    return PlantedNetwork(genes, pairs[:, 0], pairs[:, 1], _signed_weights(rng, len(pairs)))


def _paper_obs(rng: np.random.Generator, net: PlantedNetwork, spec: dict) -> pd.DataFrame:
    """Singles (2/3 CRISPRi) on regulators, CRISPRi combos among singles, controls."""
    regs = np.unique(net.source)
    targets = net.genes[rng.choice(regs, min(spec["n_perturbations"], len(regs)), replace=False)]
    perts = [(str(t), "CRISPRi" if i % 3 else "CRISPRa") for i, t in enumerate(targets)]
    ci = [t for t, m in perts if m == "CRISPRi"]
    for _ in range(spec["n_combos"] if len(ci) > 1 else 0):
        perts.append(("+".join(sorted(rng.choice(ci, 2, replace=False))), "CRISPRi"))
    perts = list(dict.fromkeys(perts))
    n_controls = int(spec["control_fraction"] * spec["n_cells"])
    n_pert = spec["n_cells"] - n_controls
    cells_per = np.full(len(perts), n_pert // len(perts))
    cells_per[: n_pert % len(perts)] += 1
    return _design(rng, perts, cells_per, n_controls)


def _tmp_path(path: Path) -> Path:
    """A fresh temporary file name beside ``path`` (same filesystem, so ``os.replace`` is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp creates 0600; the result is a normal, shareable data file
    return Path(name)


def write_paper_screen(
    path: str | Path,
    *,
    n_cells: int = 53_000,
    n_genes: int = 18_000,
    n_perturbations: int = 1_000,
    chunk_size: int = 2000,
    seed: int = 0,
) -> Path:
    """Generate a paper-scale log-linear screen in chunks of cells and write it as h5ad.

    Each chunk is simulated densely, converted to CSR and appended to ``X`` on disk, so memory
    stays at one dense chunk (``chunk_size x n_genes``); the whole matrix is never held. Most
    genes are lowly expressed (``baseline_sd`` 2), giving ~10x-like sparsity. The file is written
    to a temporary name beside ``path`` and moved into place atomically.

    Parameters
    ----------
    path
        Output ``.h5ad`` path (its folder must exist).
    n_cells, n_genes, n_perturbations
        Sizes; see :func:`paper_screen_spec` for the other parameters.
    chunk_size
        Cells simulated per chunk.
    seed
        Random seed (the result depends on ``seed`` and ``chunk_size``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    spec = paper_screen_spec(n_cells=n_cells, n_genes=n_genes, n_perturbations=n_perturbations)
    rng = np.random.default_rng(seed)
    net = _paper_network(rng, _paper_genes(n_genes), spec)
    obs = _paper_obs(rng, net, spec)
    sim = _LogLinear(net, *_baseline(rng, n_genes, sd=spec["baseline_sd"]), library=spec["library"])
    params = {k: v for k, v in spec.items() if k not in ("n_cells", "n_genes", "n_perturbations")}
    synthetic = _synthetic(
        "write_paper_screen",
        seed,
        obs,
        n_genes,
        "log-linear",
        chunk_size=int(chunk_size),
        n_single_targets=spec["n_perturbations"],
        **params,
    )
    tmp = _tmp_path(path)
    try:
        _anndata(None, obs, net, synthetic).write_h5ad(tmp)
        with h5py.File(tmp, "a") as f:
            for i, start in enumerate(range(0, len(obs), chunk_size)):
                chunk = sim.counts(np.random.default_rng([seed, i]), obs.iloc[start : start + chunk_size])
                if i == 0:
                    write_elem(f, "X", chunk, dataset_kwargs={"compression": "gzip"})
                else:
                    sparse_dataset(f["X"]).append(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    out = write_demo()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
