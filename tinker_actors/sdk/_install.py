"""Make ``import tinker`` (and its submodules) resolve to the drop-in.

:func:`install` puts a finder first on ``sys.meta_path`` that answers every
``tinker`` / ``tinker.*`` import with an alias module: a small module object
whose attributes are read from the drop-in module it stands for
(``tinker.types.tensor_data`` reads from :mod:`tinker_actors.sdk.types`,
``tinker.lib.public_interfaces.api_future`` from
:mod:`tinker_actors.sdk.public_interfaces`, ...). A submodule the drop-in
has no counterpart for fails to import with a ModuleNotFoundError that says so.
:func:`uninstall` undoes it (tests use it to run the official SDK and the
drop-in in one process, one after the other).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types as pytypes
from typing import Any

__all__ = ["install", "uninstall", "installed"]

# alias prefix -> drop-in module, most specific first
_TARGETS: tuple[tuple[str, str], ...] = (
    ("tinker.lib.public_interfaces", "tinker_actors.sdk.public_interfaces"),
    ("tinker.lib", "tinker_actors.sdk._lib"),
    ("tinker.types", "tinker_actors.sdk.types"),
    ("tinker.auth", "tinker_actors.sdk.auth"),
    ("tinker._exceptions", "tinker_actors.sdk._exceptions"),
    ("tinker", "tinker_actors.sdk"),
)


def _target(fullname: str) -> str | None:
    for prefix, target in _TARGETS:
        if fullname == prefix or fullname.startswith(prefix + "."):
            if prefix in ("tinker", "tinker.lib") and fullname != prefix:
                return None  # a module of the SDK we have no counterpart for
            return target
    return None


class _Alias(pytypes.ModuleType):
    """A module whose attributes come from another module."""

    def __init__(self, name: str, target: pytypes.ModuleType) -> None:
        super().__init__(name, target.__doc__)
        self.__dict__["_alias_target"] = target
        self.__path__: list[str] = []  # a package, so its submodules import through the finder

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self.__dict__["_alias_target"], name)
        except AttributeError:
            raise AttributeError(f"module {self.__name__!r} (tinker_actors.sdk) has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.__dict__["_alias_target"])) | set(self.__dict__))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> pytypes.ModuleType:
        return _Alias(spec.name, importlib.import_module(self._target))

    def exec_module(self, module: pytypes.ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tinker" and not fullname.startswith("tinker."):
            return None
        mapped = _target(fullname)
        if mapped is None:
            raise ModuleNotFoundError(
                f"{fullname} is part of the official tinker SDK that the tinker_actors drop-in does not provide "
                "(its public API is tinker, tinker.types, tinker.lib.public_interfaces and tinker.auth)",
                name=fullname,
            )
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(mapped), is_package=True)


_FINDER = _Finder()
_SAVED: dict[str, pytypes.ModuleType] = {}


def installed() -> bool:
    return _FINDER in sys.meta_path


def install(*, replace: bool = False) -> None:
    """Make ``import tinker`` give the drop-in, for this process.

    Call it before the program imports ``tinker``. If the official SDK was
    already imported, this raises RuntimeError (objects made from it would
    mix with ours) unless ``replace=True``, which sets the SDK's modules
    aside (:func:`uninstall` puts them back).
    """
    if installed():
        return
    loaded = [name for name in sys.modules if name == "tinker" or name.startswith("tinker.")]
    if loaded and not isinstance(sys.modules.get("tinker"), _Alias):
        if not replace:
            raise RuntimeError(
                "the official tinker SDK is already imported in this process; call "
                "tinker_actors.sdk.install() before the first `import tinker` (or pass replace=True)"
            )
        for name in loaded:
            _SAVED[name] = sys.modules.pop(name)
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Undo :func:`install`: drop the aliases and put back any SDK modules it set aside."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [n for n, m in sys.modules.items() if isinstance(m, _Alias)]:
        del sys.modules[name]
    sys.modules.update(_SAVED)
    _SAVED.clear()
