"""One generic registry, instantiated once per kind of component.

Components register under an explicit name with a decorator (the name is what gin files and
leaderboards show). Duplicate names are refused; unknown names raise a ``KeyError`` that
suggests the closest known names and lists all of them. Third-party packages register through
the ``i2m2bench.plugins`` entry-point group (see :func:`load_plugins`) or by a gin ``import``.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import os
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

PLUGIN_GROUP = "i2m2bench.plugins"


class RegistryError(Exception):
    """A registration that breaks the registry's rules (duplicate name, wrong type)."""


class UnknownNameError(KeyError):
    """An unknown name was looked up; the message suggests close names and lists all of them."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return str(self.args[0])


def origin_of(obj: object) -> str:
    """``obj``'s dotted name (module + qualified name), the default origin of a registration."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """Name -> component mapping for one kind of component (datasets, encoders, fusions, ...).

    ``base`` is checked on registration when given: classes must subclass it, and callables
    (factories) are accepted when ``base`` is None.
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, origin: str | None = None) -> None:
        """Register ``obj`` under ``name``. ``origin`` (shown by ``list`` and in duplicate-name
        errors) defaults to ``obj``'s dotted name; pass it when ``obj`` wraps the component, e.g.
        a record holding a function, whose own module and name say nothing useful."""
        if origin is None:
            origin = origin_of(obj)
        if name in self._items:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {self._origin[name]}); "
                f"refusing to register {origin} under the same name. Pick another name."
            )
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise RegistryError(
                f"{self.kind} {name!r}: {origin} must be a subclass of {self.base.__name__}"
            )
        self._items[name] = obj
        self._origin[name] = origin

    def remove(self, name: str) -> None:
        """Unregister ``name`` (used by tests that register temporary components)."""
        self._items.pop(name, None)
        self._origin.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(str(name), self._items, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            off = ("" if plugins_enabled() else f" (plugins are switched off by {PLUGINS_ENV}=0 or "
                   "--no-plugins: names registered by plugins, the suite's contrib TFN and GMU "
                   "among them, are unknown)")
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind} names: "
                f"{', '.join(sorted(self._items)) or '(none)'}{off}"
            )
        return self._items[name]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origin[name]


class PluginError(Exception):
    """A plugin entry point failed to load."""


_plugins_loaded = False


PLUGINS_ENV = "I2M2BENCH_PLUGINS"


def plugins_enabled() -> bool:
    """False when ``I2M2BENCH_PLUGINS=0`` (or ``--no-plugins``): no entry point is loaded."""
    return os.environ.get(PLUGINS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def load_plugins(force: bool = False) -> list[str]:
    """Import every module advertised under the ``i2m2bench.plugins`` entry-point group
    (the suite's own ``contrib`` methods among them), once per process.

    Importing the module is what registers its components. Returns the entry-point names loaded.
    A failing import raises :class:`PluginError` naming the entry point and its distribution;
    ``I2M2BENCH_PLUGINS=0`` skips every plugin, so one broken plugin cannot lock a user out.
    """
    global _plugins_loaded
    if (_plugins_loaded and not force) or not plugins_enabled():
        return []
    _plugins_loaded = True
    loaded = []
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", "?")
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise PluginError(
                f"plugin entry point {ep.name!r} = {ep.value!r} from package {dist!r} "
                f"(group {PLUGIN_GROUP!r}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        loaded.append(ep.name)
        if dist != "?":
            _loaded_dists[dist] = getattr(ep.dist, "version", "?")
    return loaded


_loaded_dists: dict[str, str] = {}


def loaded_plugins() -> dict[str, str]:
    """Distribution name -> version of the plugins this process has loaded."""
    return dict(_loaded_dists)
