"""One registration style for every kind of plug-in (downstream tasks today).

A `Registry` maps a name to an object. Built-in entries are "module:attribute" strings,
imported on first use, so listing the names (the Snakefile does, to build its wildcards and
tables) never imports torch. Code outside `lgvq/` registers with the decorator

    from lgvq.downstream.registry import HEADS

    @HEADS.register("toy")
    class ToyTask(DownstreamTask): ...

in a module the config names under `plugins:`; every process that reads the config (the
Snakefile and each job) imports those modules first (`load_plugins`, called by
lgvq.config.validate_config), so a plug-in is known everywhere the built-ins are.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Iterable, Mapping

from lgvq.config import ConfigError


class Registry:
    def __init__(self, kind: str, key: str, builtin: Mapping[str, str]) -> None:
        self.kind, self.key = kind, key       # e.g. "downstream task", "downstream.tasks"
        self._builtin = dict(builtin)
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable[[Any], Any]:
        """Decorator (or direct call with `obj`): a class is instantiated without arguments."""

        def add(o: Any) -> Any:
            if name in self._builtin:
                raise ConfigError(f"{self.key}: '{name}' is a built-in {self.kind}; register under another name")
            self._loaded[name] = o() if isinstance(o, type) else o
            return o

        return add(obj) if obj is not None else add

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._builtin, *self._loaded]))

    def __contains__(self, name: str) -> bool:
        return name in self._builtin or name in self._loaded

    def get(self, name: str, key: str | None = None) -> Any:
        if name not in self:
            raise ConfigError(f"{key or self.key}: unknown {self.kind} '{name}' (known: {', '.join(self.names())}; "
                              "add one with a module under `plugins:`)")
        if name not in self._loaded:
            module, attr = self._builtin[name].split(":")
            obj = getattr(importlib.import_module(module), attr)
            self._loaded[name] = obj() if isinstance(obj, type) else obj
        return self._loaded[name]

    def check(self, names: Iterable[str], key: str) -> None:
        """A config list of names: every one registered, else a ConfigError naming `key`."""
        unknown = [n for n in names if n not in self]
        if unknown:
            raise ConfigError(f"{key}: unknown {self.kind}(s) {unknown} (known: {', '.join(self.names())}; "
                              "add one with a module under `plugins:`)")


def load_plugins(modules: Iterable[str], key: str = "plugins") -> None:
    """Import each module named in the config (idempotent: Python caches imports)."""
    for i, name in enumerate(modules):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"{key}[{i}]: cannot import plug-in module '{name}' ({e}); install it or put its "
                              "folder on PYTHONPATH") from e
