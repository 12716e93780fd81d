"""The error a bad configuration raises, in a module of its own: the config module and the registries
(lgvq.registry and the registries built on it) both raise it, and the config module calls the
registries to check names, so it lives below both."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending key."""
