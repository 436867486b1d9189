"""The public API is typed and documented: no ``Any`` in any public signature, a docstring on every symbol."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

import refgrad

# Modules run as programs or holding only command-line plumbing have no importable API.
NOT_LIBRARY = {"refgrad.__main__"}


def public_modules() -> list[str]:
    """Every module of the refgrad package whose dotted path has no private part."""
    found = ["refgrad"]
    for info in pkgutil.walk_packages(refgrad.__path__, prefix="refgrad."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts) or info.name in NOT_LIBRARY:
            continue
        found.append(info.name)
    return sorted(found)


def public_symbols(module: types.ModuleType) -> Iterator[tuple[str, object]]:
    """The names a module exports (``__all__``), with the objects they name."""
    for name in module.__all__:
        yield name, getattr(module, name)


def _mentions_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    return any(_mentions_any(argument) for argument in typing.get_args(hint))


@functools.cache
def _type_namespace() -> dict[str, object]:
    # Names imported only for type checking (Value in the registry, Gradients in value.py)
    # resolve against everything the package exports.
    namespace: dict[str, object] = {}
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        namespace.update(public_symbols(module) if hasattr(module, "__all__") else ())
    return namespace


def _signature_hints(function: object) -> dict[str, object]:
    return typing.get_type_hints(function, localns=_type_namespace())


def _defined_in_refgrad(function: object) -> bool:
    # Skips methods that namedtuple or dataclass generated (their code has no file of ours).
    code = getattr(function, "__code__", None)
    return code is not None and "refgrad" in code.co_filename


def _callables(obj: object) -> Iterator[tuple[str, object]]:
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_") and name not in {"__init__", "__new__", "__call__", "__getitem__"}:
                continue
            if isinstance(member, property) and member.fget is not None:
                yield f"{obj.__name__}.{name}", member.fget
            elif isinstance(member, staticmethod | classmethod):
                wrapper = typing.cast("staticmethod[..., object] | classmethod[object, ..., object]", member)
                yield f"{obj.__name__}.{name}", wrapper.__func__
            elif inspect.isfunction(member):
                yield f"{obj.__name__}.{name}", member
    elif inspect.isfunction(obj):
        yield getattr(obj, "__name__", "?"), obj


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_module_declares_its_exports(module_name: str) -> None:
    """Each public module lists its API in __all__, and every listed name exists."""
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no module docstring"
    if module_name.endswith(".cli"):
        return  # command-line modules expose main() only through __all__ if at all
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"


@pytest.mark.parametrize("module_name", public_modules())
def test_public_signatures_have_no_any_and_every_symbol_a_docstring(module_name: str) -> None:
    """Walk every exported function, class and public method: annotated, Any-free, documented."""
    module = importlib.import_module(module_name)
    for name, obj in public_symbols(module) if hasattr(module, "__all__") else ():
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"
        for qualified, function in _callables(obj):
            if not _defined_in_refgrad(function):
                continue
            hints = _signature_hints(function)
            assert "return" in hints or qualified.endswith(("__init__", "__new__")), (
                f"{module_name}.{qualified} has no return annotation"
            )
            for parameter, hint in hints.items():
                assert not _mentions_any(hint), f"{module_name}.{qualified}: {parameter} is {hint!r}"


def test_the_walk_sees_the_core() -> None:
    """The module walk covers the engine itself, so the checks above cannot pass vacuously."""
    modules = public_modules()
    for expected in ("refgrad", "refgrad.value", "refgrad.autodiff", "refgrad.ops.spec", "refgrad.micrograd.engine"):
        assert expected in modules


def test_the_version_is_written_once_and_the_licence_ships() -> None:
    """The installed metadata's version is ``refgrad.__version__`` (the build reads it there); the MIT text ships."""
    assert metadata.version("refgrad") == refgrad.__version__
    assert metadata.metadata("refgrad")["License-Expression"] == "MIT"
    assert metadata.metadata("refgrad").get_all("License-File") == ["LICENSE"]
    licence = Path(__file__).resolve().parent.parent / "LICENSE"
    assert licence.read_text(encoding="utf-8").startswith("MIT License\n")
    assert refgrad.__version__.count(".") == 2
