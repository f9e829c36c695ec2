"""Sphinx directives that render TVM's own sources of truth into the docs.

``tvm-settings``
    every field of :class:`tvm.config.settings.Settings`: its ``TVM_*`` name, type,
    default and description (the settings object is the one place that decides them).
``tvm-api-reference``
    one section per module of the ``tvm`` package, documented from its docstrings
    with ``automodule`` (modules that run something on import, ``__main__``, skipped;
    a name a package re-exports in ``__all__`` is documented once, where it is defined).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    return str(value) if str(value) != "" else "(empty)"


def _type(field: Any) -> str:
    text = str(field.annotation).replace("typing.", "")
    return text.removeprefix("<class '").removesuffix("'>")


class SettingsTable(SphinxDirective):
    """A definition list of every setting: name, type, default, meaning."""

    def run(self) -> list[nodes.Node]:
        from tvm.config.settings import Settings

        lines: list[str] = []
        for name, field in Settings.model_fields.items():
            lines += [
                f"``TVM_{name.upper()}`` (``{_type(field)}``, default ``{_default(field)}``)",
                f"   {field.description or ''}",
                "",
            ]
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="tvm-settings"), 0, container)
        return list(container.children)


def _modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


class ApiReference(SphinxDirective):
    """A section per module of the package, from its docstrings."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for module in _modules(self.arguments[0]):
            title = f"``{module}``"
            lines += [
                title,
                "-" * len(title),
                "",
                f".. automodule:: {module}",
                "   :ignore-module-all:",
                "",
            ]
        container = nodes.section()
        nested_parse_with_titles(
            self.state, StringList(lines, source="tvm-api-reference"), container
        )
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("tvm-settings", SettingsTable)
    app.add_directive("tvm-api-reference", ApiReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
