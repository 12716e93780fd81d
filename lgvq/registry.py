"""One registration style for every kind of plug-in (downstream and second-stage tasks, tokenizers,
text encoders, dataset sources).

A `Registry` maps a name to an object. Built-in entries are "module:attribute" strings,
imported on first use, so listing the names (the Snakefile does, to build its wildcards and
tables) never imports torch. Code outside `lgvq/` registers with the decorator

    from lgvq.downstream.registry import HEADS

    @HEADS.register("toy")
    class ToyTask(DownstreamTask): ...

in a module the config names under `plugins:`; every process that reads the config (the
Snakefile and each job) imports those modules first (`load_plugins`, called by
lgvq.config.validate_config), so a plug-in is known everywhere the built-ins are. A registry
with an entry-point `group` also lists what installed distributions declare there
(`[project.entry-points."lgvq.tokenizers"]`); those are imported on first use too.

Where the config names a class (tokenizers' `class:`, `text_encoder.name`), an import path
`package.module:ClassName` works as well, without registering anything: `is_import_path`,
`check_import_path`, `import_object`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from typing import Any, Callable, Iterable, Mapping

from lgvq.errors import ConfigError

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_import_path(spec: str) -> bool:
    return ":" in spec


def check_import_path(spec: str, key: str) -> None:
    """An import path is well formed (checked when the config is validated: no import, no torch)."""
    if is_import_path(spec) and not _IMPORT_PATH.match(spec):
        raise ConfigError(f"{key}: '{spec}' is not an import path of the form package.module:ClassName")


def import_object(spec: str, key: str) -> Any:
    """What `package.module:Name` names, imported; a ConfigError naming `key` when it cannot be."""
    check_import_path(spec, key)
    module, attr = spec.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ConfigError(f"{key}: cannot import module '{module}' of '{spec}' ({e}); install it or put its "
                          "folder on PYTHONPATH (every job imports it)") from e
    except AttributeError as e:
        raise ConfigError(f"{key}: module '{module}' has no attribute '{attr}' ('{spec}')") from e


class Registry:
    def __init__(self, kind: str, key: str, builtin: Mapping[str, str], *, instantiate: bool = True,
                 group: str | None = None) -> None:
        self.kind, self.key = kind, key       # e.g. "downstream task", "downstream.tasks"
        self._builtin = dict(builtin)
        self._loaded: dict[str, Any] = {}
        self._origin: dict[str, str] = {}     # name -> where a non-built-in entry came from
        self._instantiate = instantiate       # tasks are used as objects, tokenizers as classes
        self._group = group
        self._entry_points: dict[str, str] | None = None   # name -> "module:attr", read once

    def _make(self, o: Any) -> Any:
        return o() if self._instantiate and isinstance(o, type) else o

    def entry_points(self) -> dict[str, str]:
        """The installed distributions' entries of the group (metadata only: nothing is imported)."""
        if self._entry_points is None:
            found = importlib.metadata.entry_points(group=self._group) if self._group else ()
            self._entry_points = {ep.name: ep.value for ep in found}
        return self._entry_points

    def register(self, name: str, obj: Any = None) -> Callable[[Any], Any]:
        """Decorator (or direct call with `obj`): a class is instantiated without arguments, unless
        the registry holds classes (`instantiate=False`, tokenizers)."""

        def add(o: Any) -> Any:
            if name in self._builtin:
                raise ConfigError(f"{self.key}: '{name}' is a built-in {self.kind}; register under another name")
            self._loaded[name] = self._make(o)
            self._origin[name] = f"plug-in module {getattr(o, '__module__', '?')}"
            return o

        return add(obj) if obj is not None else add

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._builtin, *self._loaded, *self.entry_points()]))

    def is_builtin(self, name: str) -> bool:
        """Shipped with the harness (its module is imported only when it is used)."""
        return name in self._builtin

    def __contains__(self, name: str) -> bool:
        return name in self._builtin or name in self._loaded or name in self.entry_points()

    def origin(self, name: str) -> str:
        """Where a name comes from: built-in, a plug-in module, or an installed distribution's entry point."""
        if name in self._builtin:
            return f"built-in ({self._builtin[name]})"
        if name in self._origin:
            return self._origin[name]
        return f"entry point {self._group} ({self.entry_points()[name]})"

    def get(self, name: str, key: str | None = None) -> Any:
        if name not in self:
            raise ConfigError(f"{key or self.key}: unknown {self.kind} '{name}' (known: {', '.join(self.names())}; "
                              "add one with a module under `plugins:`)")
        if name not in self._loaded:
            if name in self._builtin:  # a broken built-in is a bug here: its traceback is the message
                module, attr = self._builtin[name].split(":")
                obj = getattr(importlib.import_module(module), attr)
            else:  # an installed distribution's entry point: what the user installed is wrong
                target = self.entry_points()[name]
                try:
                    module, attr = target.split(":")
                    obj = getattr(importlib.import_module(module), attr)
                except (ImportError, AttributeError, ValueError) as e:
                    raise ConfigError(f"{key or self.key}: {self.kind} '{name}' is the entry point {self._group} "
                                      f"'{target}' of an installed distribution, which cannot be loaded ({e})") from e
            self._loaded[name] = self._make(obj)
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
