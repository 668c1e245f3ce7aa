"""Name → loss-class registry, so that a config can name a loss by a string.

Every loss module registers its classes with :func:`register`; :func:`build_loss` builds one by name.
The engine always passes ``num_classes`` and ``class_counts``; a loss whose constructor does not take
them simply does not receive them. Any other parameter the constructor does not accept is an error.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}

#: Parameters the engine passes to every loss; dropped where a constructor does not take them.
ENGINE_PARAMS = ("num_classes", "class_counts", "seed")

_SUPPLIED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "lpl_engine_supplied", default=frozenset()
)


def supplied_by_builder() -> frozenset[str]:
    """Names of the :data:`ENGINE_PARAMS` that :func:`build_loss` passes to the loss being built (empty
    outside it). A loss that warns about a parameter with no effect stays quiet about these: the engine
    passes them to every loss, whether it uses them or not."""
    return _SUPPLIED.get()


@contextmanager
def _building(names: frozenset[str]) -> Iterator[None]:
    token = _SUPPLIED.set(names)
    try:
        yield
    finally:
        _SUPPLIED.reset(token)


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a loss class under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"loss name must be a non-empty string, got {name!r}")

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"loss name {name!r} is already registered to {_REGISTRY[name].__name__}"
            )
        _REGISTRY[name] = cls
        return cls

    return deco


def available_losses() -> list[str]:
    """Sorted list of the registered loss names."""
    return sorted(_REGISTRY)


def build_loss(name: str, **params: Any) -> nn.Module:
    """Build the loss registered as ``name`` with ``params``.

    ``num_classes``, ``class_counts`` and ``seed`` (the run's ``train.seed``, for a loss that draws random
    numbers of its own) are accepted for every loss and ignored where the loss does not need them. Unknown
    names and unknown parameters raise ``ValueError`` listing what is allowed.
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {type(name).__name__} {name!r}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(available_losses())}")
    cls = _REGISTRY[name]
    sig = inspect.signature(cls.__init__)
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    allowed = {n for n in sig.parameters if n != "self"}
    kwargs = {}
    for key, value in params.items():
        if key in allowed or accepts_kwargs:
            kwargs[key] = value
        elif key in ENGINE_PARAMS:
            continue
        else:
            raise ValueError(
                f"loss {name!r} got unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}"
            )
    with _building(frozenset(k for k in ENGINE_PARAMS if k in kwargs)):
        return cls(**kwargs)
