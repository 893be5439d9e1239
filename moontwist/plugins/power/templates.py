"""Jinja2 templates in config options, as Moonraker writes them, rendered in a sandbox.

Moonraker's syntax: ``{expression}`` (single braces) and ``{% statement %}``, the
``do`` extension, the ``fromjson`` filter and the globals ``secrets`` (the secrets
file), ``raise_error(message)`` and ``log_debug(message)``.  Templates come from the
config file, so they run in :class:`jinja2.sandbox.SandboxedEnvironment`: no
attribute starting with ``_``, no unsafe callables.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from twisted.internet.task import deferLater
from twisted.logger import Logger

from moontwist import jsonutil
from moontwist.config import ConfigError, ConfigSection

__all__ = ["Templates", "Template", "TemplateFailed"]

class TemplateFailed(Exception):
    """A template could not be rendered (or called ``raise_error``); the message says why."""


def _raise_error(message: str, code: int = 400) -> None:
    raise TemplateFailed(str(message))


class Template:
    """One compiled template; ``render`` (sync) or ``render_async`` (may await Deferreds)."""

    def __init__(self, source: str, compiled: Any, is_async: bool) -> None:
        self.source = source
        self._compiled = compiled
        self.is_async = is_async

    def render(self, context: dict[str, Any] | None = None) -> str:
        try:
            return str(self._compiled.render(context or {})).strip()
        except TemplateFailed:
            raise
        except Exception as exc:
            raise TemplateFailed(f"{type(exc).__name__}: {exc}") from None

    async def render_async(self, context: dict[str, Any] | None = None) -> str:
        try:
            return str(await self._compiled.render_async(context or {})).strip()
        except TemplateFailed:
            raise
        except Exception as exc:
            raise TemplateFailed(f"{type(exc).__name__}: {exc}") from None


class Templates:
    """The sandboxed environments of one power plugin (one server)."""

    def __init__(self, reactor: Any, secrets: dict[str, dict[str, Any]], log: Logger) -> None:
        self.reactor = reactor
        self.log = log
        options: dict[str, Any] = {
            "block_start_string": "{%",
            "block_end_string": "%}",
            "variable_start_string": "{",
            "variable_end_string": "}",
            "extensions": ["jinja2.ext.do"],
        }
        self.sync_env = SandboxedEnvironment(**options)
        self.async_env = SandboxedEnvironment(enable_async=True, **options)
        for env in (self.sync_env, self.async_env):
            env.filters["fromjson"] = jsonutil.loads
            env.globals.update(secrets=secrets, raise_error=_raise_error, log_debug=self._log_debug)
        self.async_env.globals["async_sleep"] = self.sleep

    def _log_debug(self, message: Any) -> None:
        self.log.debug("Template: {message}", message=message)

    def sleep(self, seconds: float) -> Any:
        """``async_sleep(seconds)`` inside async templates: a reactor delay, never a blocked thread."""
        return deferLater(self.reactor, max(0.0, float(seconds)), lambda: None)

    def compile(self, source: str, is_async: bool = False) -> Template:
        env = self.async_env if is_async else self.sync_env
        return Template(source, env.from_string(source), is_async)

    def option(
        self, section: ConfigSection, option: str, default: Any = ..., is_async: bool = False
    ) -> Template | None:
        """A template read from ``option``; ConfigError naming it when it doesn't compile.

        Without ``default`` the option is required; with ``default=None`` a missing
        option gives None.
        """
        source = section.get(option) if default is ... else section.get(option, default)
        if source is None:
            return None
        try:
            return self.compile(source, is_async)
        except TemplateError as exc:
            raise ConfigError(
                f"Config error in section [{section.name}], option '{option}': invalid template: {exc}"
            ) from None

    def rendered(self, section: ConfigSection, option: str, default: Any = ...) -> Any:
        """The rendered text of a template option (``user``, ``password``, ``token``, URLs)."""
        template = self.option(section, option, default)
        if template is None:
            return None
        try:
            return template.render()
        except TemplateFailed as exc:
            raise ConfigError(f"Config error in section [{section.name}], option '{option}': {exc}") from None
