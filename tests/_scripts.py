"""Loading the test suite's own scripts (tests/*.py that are not test modules) as modules, for their tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_script(name: str) -> ModuleType:
    """``tests/NAME.py`` as a fresh module ``under_test_NAME`` (registered, so dataclasses and pickling work)."""
    spec = importlib.util.spec_from_file_location(f"under_test_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
