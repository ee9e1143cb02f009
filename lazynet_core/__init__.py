"""LazyNet: an interpretable one-step neural ODE for two-snapshot CRISPR screens.

The public API is exported lazily (PEP 562) so ``import lazynet_core`` stays cheap and never
imports Streamlit; only :mod:`lazynet_core.ui` does.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "config", "PairConfig": "config", "TrainConfig": "config", "NetworkConfig": "config",
    "ScreenError": "errors", "RunError": "errors", "TrainingCancelled": "errors", "TrainingError": "errors",
    "toy_screen": "datasets", "demo_screen": "datasets", "hill_screen": "datasets", "load_demo": "datasets",
    "demo_path": "datasets", "write_paper_screen": "datasets",
    "read_screen": "data", "detect_columns": "data", "validate_screen": "data",
    "make_pairs": "pairs", "Pairs": "pairs",
    "LazyNet": "model", "LogLinExpBlock": "model",
    "train_ensemble": "train", "Ensemble": "ensemble",
    "save_run": "runs", "load_run": "runs", "list_runs": "runs",
    "evaluate": "metrics", "summarize": "metrics", "compare": "metrics",
    "cross_validate": "validation",
    "jacobian": "jacobian", "column_provider": "jacobian",
    "expand_from_seeds": "network", "edges_frame": "network",
    "module_table": "modules", "module_genes": "modules",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    msg = f"module 'lazynet_core' has no attribute {name!r}"
    raise AttributeError(msg)
