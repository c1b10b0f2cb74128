"""fer_core's public surface: every name in ``__all__`` resolves, lazily, without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fer_core
from conftest import ROOT


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet); its last line of output."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("name", fer_core.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(fer_core, name)
    if callable(value):  # a function or class: defined in a fer_core module, not taken from elsewhere
        assert value.__module__.startswith("fer_core."), value.__module__
    assert getattr(fer_core, name) is value and name in dir(fer_core)


def test_public_names_are_unique_and_none_hides_a_submodule() -> None:
    import pkgutil

    submodules = {info.name for info in pkgutil.iter_modules(fer_core.__path__)}
    assert len(set(fer_core.__all__)) == len(fer_core.__all__)
    assert not set(fer_core.__all__) & submodules


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        fer_core.no_such_name  # noqa: B018


def test_importing_the_package_imports_no_submodule_and_no_tensorflow() -> None:
    code = ("import sys, fer_core; "
            "print(sorted(m for m in sys.modules if m.startswith('fer_core.')), 'tensorflow' in sys.modules)")
    assert _run(code) == "[] False"


def test_importing_every_public_name_imports_no_tensorflow() -> None:
    """Only training, exporting or predicting starts TensorFlow, not naming those functions."""
    code = ("import sys; from fer_core import *; from fer_core import Predictor, load, make_splits, TrainConfig, "
            "fit, export_model, evaluate_predictions; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert _run(code) == "False False"
