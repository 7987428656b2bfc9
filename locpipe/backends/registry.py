"""One registry shape for every kind of model engine (ASR, MT, TTS, OCR, speaker encoder, separation).

As in pysubs2's format registry, adding a backend is one module with a ``@REGISTRY.register(name)``
class and one line in its kind's module list. Modules are imported on first lookup, so an
optional backend whose package is missing costs nothing until it is asked for, and then
fails with ``BackendUnavailable`` naming what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from locpipe.errors import BackendUnavailable

T = TypeVar("T")

#: the log line of every real model load (weights read into memory); benchmarks/pipeline.py
#: counts these to show that a worker loads each model once
MODEL_LOADED = "model loaded: %s in %.2f s"


class Registry(Generic[T]):
    """Backend name -> factory for one kind of engine."""

    def __init__(self, kind: str, modules: tuple[str, ...]):
        self.kind = kind
        self._modules = modules
        self._factories: dict[str, Callable[..., T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator: the class is the factory, and learns its registry name."""
        def deco(cls: type) -> type:
            cls.name = name
            self._factories[name] = cls
            return cls

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:  # imported for their @register side effect
                importlib.import_module(module)

    def names(self) -> list[str]:
        """Every registered backend (whether or not it can run here)."""
        self._load()
        return sorted(self._factories)

    def create(self, name: str, *args, **kwargs) -> T:
        """A new engine of backend ``name``; unknown names fail listing the known ones."""
        self._load()
        try:
            factory = self._factories[name]
        except KeyError:
            raise BackendUnavailable(f"unknown {self.kind} backend {name!r}; available: {self.names()}") from None
        return factory(*args, **kwargs)
