"""Package conventions: only `ui` imports Streamlit; public functions follow the AnnData-first,
keyword-only style with docstrings."""

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lazynet_core

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(lazynet_core.__path__) if m.name not in ("ui", "__main__")
)


def test_core_never_imports_streamlit():
    code = (
        "import sys, importlib\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module('lazynet_core.' + name)\n"
        "assert 'streamlit' not in sys.modules, 'streamlit imported outside lazynet_core.ui'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_lazy_exports_resolve():
    for name in lazynet_core.__all__:
        assert getattr(lazynet_core, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        lazynet_core.not_a_thing  # noqa: B018


def _public_functions():
    for name in CORE_MODULES:
        module = importlib.import_module(f"lazynet_core.{name}")
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module.__name__:
                continue
            yield f"{name}.{attr}", obj


@pytest.mark.parametrize(("name", "func"), list(_public_functions()))
def test_public_function_conventions(name, func):
    assert func.__doc__ and func.__doc__.strip(), f"{name} has no docstring"
    params = list(inspect.signature(func).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 3, f"{name}: at most three positional parameters, the rest keyword-only"
