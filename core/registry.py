"""One registry per axis (datasets, architectures, recipes, attacks, defenses).

Modelled on timm's ``register_model`` / ``list_models`` / ``create_model``::

    ARCHS = Registry("architecture")

    @ARCHS.register("convnet", description="small CPU-friendly convnet")
    def convnet(in_chans: int, num_classes: int, img_size: int) -> nn.Module: ...

    ARCHS.list("res*")           # ['resnet18', 'resnet50']
    ARCHS.create("convnet", in_chans=1, num_classes=10, img_size=16)
    ARCHS.create("convnt")       # UnknownNameError: unknown architecture 'convnt'; did you mean 'convnet'?
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from sapabench.core.errors import ConfigError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered factory with its name and one-line description."""

    name: str
    factory: Callable[..., T]
    description: str


PLUGIN_TIMEOUT_S = 30.0
"""How long a plugin's import may take before it is reported and skipped (``SAPABENCH_PLUGIN_TIMEOUT``
overrides it): a plugin that hangs on import must not hang the harness."""


def plugin_timeout() -> float:
    raw = os.environ.get("SAPABENCH_PLUGIN_TIMEOUT")
    try:
        value = float(raw) if raw else PLUGIN_TIMEOUT_S
    except ValueError:
        return PLUGIN_TIMEOUT_S
    return value if 0 < value < 3600 else PLUGIN_TIMEOUT_S


class PluginTimeout(Exception):
    """A plugin's import did not finish in time."""


def _load(ep: Any, timeout: float) -> Any:
    """``ep.load()`` in a daemon thread, waited for ``timeout`` seconds: a plugin that hangs on
    import is abandoned (its thread ends with the process) instead of hanging the command."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = ep.load()
        except BaseException as err:  # re-raised in the caller's thread
            result["error"] = err

    thread = threading.Thread(target=run, name=f"plugin-{ep.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise PluginTimeout(f"its import did not finish in {timeout:g} s (SAPABENCH_PLUGIN_TIMEOUT)")
    if "error" in result:
        raise result["error"]
    return result["value"]


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
"""What a registered name may be: it names files, folders and CSV cells."""


def _first_doc_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Named factories of one kind, filled by the :meth:`register` decorator at import time."""

    def __init__(
        self,
        kind: str,
        plugin_group: str | None = None,
        renamed: Mapping[str, str] | None = None,
        derive: Callable[[str], bool] | None = None,
    ) -> None:
        self.kind = kind
        self.plugin_group = plugin_group
        self.renamed = MappingProxyType(dict(renamed or {}))  # old name -> what it is called now, and why
        self.derive = derive  # registers a name made from another entry's (a control of a plugin), or says no
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = plugin_group is None
        self.plugin_errors: dict[str, str] = {}

    def _load_plugins(self) -> None:
        """Import the packaging entry points of ``plugin_group`` once, on first use.

        An entry point names a module (its import registers entries with the decorators) or a
        factory (registered under the entry point's name). A plugin that fails to import is
        skipped with a warning and remembered in ``plugin_errors``; the harness keeps working.
        """
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in sorted(entry_points(group=self.plugin_group), key=lambda e: e.name):
            before = set(self._entries)
            try:
                if ep.name in before:
                    raise ValueError(
                        f"its name is the built-in {self.kind} {ep.name!r}'s; a plugin may not replace a built-in: "
                        "rename its entry point"
                    )
                obj = _load(ep, plugin_timeout())
                if callable(obj) and not isinstance(obj, type(sys)) and ep.name not in self._entries:
                    self.register(ep.name)(obj)
            # a broken plugin must not break the harness, whatever it raises on import: SystemExit,
            # KeyboardInterrupt and GeneratorExit from its module are its failure, not the user's
            except BaseException as err:
                for name in set(self._entries) - before:  # nothing half-registered stays
                    del self._entries[name]
                message = " ".join(str(err).split()) or type(err).__name__
                self.plugin_errors[ep.name] = f"{type(err).__name__}: {message}"
                print(
                    f"sapabench: warning: {self.kind} plugin {ep.name!r} ({ep.value}) was not loaded: "
                    f"{type(err).__name__}: {message}",
                    file=sys.stderr,
                )

    def register(self, name: str, *, description: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under an explicit ``name``."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(
                f"{self.kind} name {name!r} must be 1-100 letters, digits, '.', '_', '+' or '-', starting with a letter "
                "or digit (it names files and folders)"
            )

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice (a plugin may not replace a built-in)")
            desc = description if description is not None else _first_doc_line(factory)
            self._entries[name] = Entry(name, factory, desc)
            return factory

        return decorator

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern`` (``*``, ``?``, ``[seq]``)."""
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entry(self, name: str) -> Entry[T]:
        """The entry called ``name``; an unknown name fails with the closest matches."""
        self._load_plugins()
        if name not in self._entries and self.derive is not None and isinstance(name, str) and NAME.fullmatch(name):
            self.derive(name)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the entry called ``name`` with ``kwargs``; bad options fail with a ConfigError."""
        factory = self.entry(name).factory
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as err:
            params = [
                p.name
                for p in inspect.signature(factory).parameters.values()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            ]
            raise ConfigError(f"{self.kind} {name!r}: {err}; its options are: {', '.join(params) or 'none'}") from None
        return factory(**kwargs)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        if name not in self._entries and self.derive is not None and isinstance(name, str) and NAME.fullmatch(name):
            self.derive(name)
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load_plugins()
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def unknown_message(self, name: str) -> str:
        """``unknown <kind> 'name'; did you mean ...?`` (or the known names): the text of the
        error :meth:`entry` raises, for callers that report it with more context (a file and line)."""
        self._load_plugins()
        if name in self.renamed:
            return f"{self.kind} {name!r} is now {self.renamed[name]}"
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        if close:
            hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        else:
            hint = "known: " + (", ".join(known) if known else "none registered")
        return f"unknown {self.kind} {name!r}; {hint}"
