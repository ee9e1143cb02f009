import pytest


@pytest.fixture(scope="session")
def toy_adata():
    from lazynet_core.data import read_screen
    from lazynet_core.datasets import toy_screen

    return read_screen(toy_screen())


@pytest.fixture(scope="session")
def toy_ensemble(toy_adata):
    """A small ensemble trained on every perturbation of the toy screen (cells split)."""
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble

    # a fit test, not an evaluation: all 30 toy controls train (no independent reference kept)
    pairs = make_pairs(
        toy_adata, PairConfig(split="cells", resamples=32, k=16, seed=0, reference_fraction=0.0)
    )
    ensemble = train_ensemble(
        pairs, ModelConfig(), TrainConfig(replicas=2, epochs=60, patience=0, lr=1e-2, batch_size=32)
    )
    return pairs, ensemble


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """``streamlit run app.py`` for one test module (runs in a fresh temporary ``<module>_runs``
    folder); yields its URL once ``/_stcore/health`` answers and stops the server afterwards. The same
    server as ``benchmarks/busy_cpu.py``'s (``benchmarks.common.app_server``; the repo root is on
    ``sys.path`` through pyproject's ``pythonpath``)."""
    from benchmarks.common import app_server

    name = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    with app_server(tmp_path_factory.mktemp(f"{name}_runs")) as url:
        yield url
