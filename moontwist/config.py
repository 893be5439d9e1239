"""moonraker.conf-compatible configuration.

Sections and options are read with typed getters that record what was asked
for: the typed values (defaults included) become ``server.config``'s
``config``, and options nobody asked for become warnings rather than errors.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from moontwist import jsonutil

__all__ = ["Config", "ConfigError", "ConfigSection", "Sentinel", "find_config_file"]

T = TypeVar("T")


class Sentinel:
    """Marks an option that has no default (so it is required)."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = Sentinel()
_SECRET_RE = re.compile(r"\{secrets\.([^.{}\s]+)\.([^.{}\s]+)\}")
_INCLUDE_PREFIX = "include "


def find_config_file(datapath: str, config_file: str | None) -> str:
    """The file to read: the one named, else an existing moonraker.conf, else moontwist.conf."""
    if config_file:
        return os.path.abspath(os.path.expanduser(config_file))
    moonraker = os.path.join(datapath, "config", "moonraker.conf")
    if os.path.exists(moonraker):
        return moonraker
    return os.path.join(datapath, "config", "moontwist.conf")


class ConfigError(Exception):
    """The configuration can't be used; the message says where and why."""


def _parser() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, inline_comment_prefixes=("#", ";"), empty_lines_in_values=False
    )
    parser.optionxform = str  # option names keep their case, as in moonraker.conf
    return parser


class Config:
    """Every section of the parsed files, plus what the getters recorded."""

    def __init__(self, main_file: str | None = None) -> None:
        self.main_file = os.path.abspath(main_file) if main_file else None
        self._raw: dict[str, dict[str, str]] = {}
        self._origin: dict[str, dict[str, str]] = {}  # section -> option -> file
        self._files: list[dict[str, Any]] = []
        self._typed: dict[str, dict[str, Any]] = {}
        self._accessed: dict[str, set[str]] = {}
        self._secrets: dict[str, dict[str, Any]] | None = None
        self.extra_warnings: list[str] = []
        if self.main_file is not None:
            self._read_file(self.main_file, set())

    @classmethod
    def from_string(cls, text: str, filename: str = "<string>") -> Config:
        """A config from text (tests, generated defaults)."""
        cfg = cls()
        cfg._absorb(text, filename, os.getcwd(), set())
        return cfg

    # reading -----------------------------------------------------------------

    def _read_file(self, path: str, seen: set[str]) -> None:
        if path in seen:
            raise ConfigError(f"Config file '{path}' includes itself")
        seen = seen | {path}
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"Unable to read config file '{path}': {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"Config file '{path}' is not valid UTF-8") from None
        self._absorb(text, path, os.path.dirname(path), seen)

    def _display_name(self, path: str) -> str:
        if self.main_file and os.path.isabs(path):
            return os.path.relpath(path, os.path.dirname(self.main_file))
        return path

    def _absorb(self, text: str, path: str, base_dir: str, seen: set[str]) -> None:
        parser = _parser()
        try:
            parser.read_string(text, source=path)
        except configparser.Error as exc:
            raise ConfigError(f"Error parsing config file '{path}': {exc}") from None
        sections: list[str] = []
        includes: list[str] = []
        for name in parser.sections():
            if name.startswith(_INCLUDE_PREFIX):
                includes.append(name[len(_INCLUDE_PREFIX):].strip())
                continue
            sections.append(name)
            target = self._raw.setdefault(name, {})
            origin = self._origin.setdefault(name, {})
            for option, value in parser.items(name):
                target[option] = value
                origin[option] = path
        self._files.append({"filename": self._display_name(path), "sections": sections})
        for pattern in includes:
            full = os.path.join(base_dir, os.path.expanduser(pattern))
            matches = sorted(glob.glob(full))
            if not matches and not glob.has_magic(full):
                raise ConfigError(f"Include file '{full}' named in '{path}' does not exist")
            for match in matches:
                self._read_file(os.path.abspath(match), seen)

    # access ------------------------------------------------------------------

    def has_section(self, name: str) -> bool:
        return name in self._raw

    def sections(self) -> list[str]:
        return list(self._raw)

    def section(self, name: str) -> ConfigSection:
        """The named section; a missing one reads as empty so defaults apply."""
        self._accessed.setdefault(name, set())
        self._typed.setdefault(name, {})
        return ConfigSection(self, name)

    __getitem__ = section

    def load_secrets(self, path: str) -> None:
        """Read ``{secrets.section.key}`` values from an ini or json file."""
        path = os.path.expanduser(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"Unable to read secrets file '{path}': {exc.strerror}") from None
        if text.lstrip().startswith("{"):
            try:
                data = jsonutil.loads(text)
            except ValueError:
                raise ConfigError(f"Secrets file '{path}' is not valid JSON") from None
            if not isinstance(data, dict):
                raise ConfigError(f"Secrets file '{path}' must hold a JSON object")
            self._secrets = {k: v for k, v in data.items() if isinstance(v, dict)}
        else:
            parser = _parser()
            try:
                parser.read_string(text, source=path)
            except configparser.Error as exc:
                raise ConfigError(f"Error parsing secrets file '{path}': {exc}") from None
            self._secrets = {s: dict(parser.items(s)) for s in parser.sections()}

    def secrets(self) -> dict[str, dict[str, Any]]:
        """The secrets file's values by section (empty when none is loaded), for templates."""
        return {name: dict(values) for name, values in (self._secrets or {}).items()}

    def _resolve(self, section: str, option: str, value: str) -> str:
        def sub(match: re.Match[str]) -> str:
            if self._secrets is None:
                raise self._error(section, option, value, "a value (no [secrets] file is configured)")
            try:
                return str(self._secrets[match.group(1)][match.group(2)])
            except KeyError:
                raise self._error(
                    section, option, value, f"a secret present in the secrets file ({match.group(0)})"
                ) from None

        return _SECRET_RE.sub(sub, value) if "{secrets." in value else value

    def _error(self, section: str, option: str, value: Any, expected: str) -> ConfigError:
        where = self._origin.get(section, {}).get(option, self.main_file or "<defaults>")
        return ConfigError(
            f"Config error in '{where}', section [{section}], option '{option}': "
            f"value {value!r} is not {expected}"
        )

    # reports -------------------------------------------------------------------

    def typed(self) -> dict[str, dict[str, Any]]:
        """Every section with its typed values (defaults included)."""
        out = {name: dict(self._typed.get(name, {})) for name in self._raw}
        for name, values in self._typed.items():
            out.setdefault(name, dict(values))
        return out

    def orig(self) -> dict[str, dict[str, str]]:
        return {name: dict(options) for name, options in self._raw.items()}

    def files(self) -> list[dict[str, Any]]:
        return [dict(f) for f in self._files]

    def warnings(self) -> list[str]:
        """Options and sections that no plugin read."""
        out: list[str] = []
        for name, options in self._raw.items():
            accessed = self._accessed.get(name)
            if accessed is None:
                out.append(
                    f"Unparsed config section [{name}] detected. This may be the result of "
                    "a plugin that failed to load or is not installed."
                )
                continue
            for option in options:
                if option not in accessed:
                    out.append(
                        f"Invalid config option '{option}' detected in section [{name}]. "
                        "Remove the option to resolve this issue."
                    )
        return out + self.extra_warnings


class ConfigSection:
    """Typed getters for one section."""

    def __init__(self, config: Config, name: str) -> None:
        self._config = config
        self.name = name

    def __contains__(self, option: str) -> bool:
        return option in self._config._raw.get(self.name, {})

    def options(self) -> list[str]:
        return list(self._config._raw.get(self.name, {}))

    def _lookup(self, option: str, default: Any) -> tuple[bool, str | None]:
        self._config._accessed.setdefault(self.name, set()).add(option)
        raw = self._config._raw.get(self.name, {}).get(option)
        if raw is None:
            if default is REQUIRED:
                where = self._config.main_file or "<config>"
                raise ConfigError(f"Config error in '{where}': option '{option}' in section [{self.name}] is required")
            return False, None
        return True, self._config._resolve(self.name, option, raw)

    def _get(
        self,
        option: str,
        default: Any,
        convert: Callable[[str], T],
        expected: str,
        *,
        minval: float | None = None,
        maxval: float | None = None,
        above: float | None = None,
        below: float | None = None,
        choices: Iterable[Any] | None = None,
    ) -> T:
        found, raw = self._lookup(option, default)
        if not found:
            self._config._typed.setdefault(self.name, {})[option] = default
            return default
        assert raw is not None
        try:
            value = convert(raw)
        except (ValueError, TypeError):
            raise self._config._error(self.name, option, raw, expected) from None
        if minval is not None and value < minval:
            raise self._config._error(self.name, option, raw, f"{expected} >= {minval}")
        if maxval is not None and value > maxval:
            raise self._config._error(self.name, option, raw, f"{expected} <= {maxval}")
        if above is not None and value <= above:
            raise self._config._error(self.name, option, raw, f"{expected} > {above}")
        if below is not None and value >= below:
            raise self._config._error(self.name, option, raw, f"{expected} < {below}")
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise self._config._error(self.name, option, raw, f"one of {allowed}")
        self._config._typed.setdefault(self.name, {})[option] = value
        return value

    def get(self, option: str, default: Any = REQUIRED, *, choices: Iterable[str] | None = None) -> Any:
        return self._get(option, default, str, "a string", choices=choices)

    def getint(self, option: str, default: Any = REQUIRED, **limits: Any) -> Any:
        return self._get(option, default, _to_int, "an integer", **limits)

    def getfloat(self, option: str, default: Any = REQUIRED, **limits: Any) -> Any:
        return self._get(option, default, float, "a number", **limits)

    def getboolean(self, option: str, default: Any = REQUIRED) -> Any:
        return self._get(option, default, _to_bool, "a boolean (true/false)")

    def getlist(self, option: str, default: Any = REQUIRED, separator: str | None = "\n", count: int | None = None) -> Any:
        def convert(raw: str) -> list[str]:
            items = _split(raw, separator)
            if count is not None and len(items) != count:
                raise ValueError(raw)
            return items

        expected = f"a list of {count} items" if count else "a list"
        return self._get(option, default, convert, expected)

    def getdict(
        self, option: str, default: Any = REQUIRED, separators: Sequence[str | None] = ("\n", "="), allow_empty: bool = False
    ) -> Any:
        def convert(raw: str) -> dict[str, str | None]:
            out: dict[str, str | None] = {}
            for item in _split(raw, separators[0]):
                key, sep, value = item.partition(separators[1] or "=")
                key = key.strip()
                if not key or (not sep and not allow_empty):
                    raise ValueError(raw)
                out[key] = value.strip() if sep else None
            return out

        return self._get(option, default, convert, "a dict of 'key=value' lines")


def _split(raw: str, separator: str | None) -> list[str]:
    parts = raw.split(separator) if separator else raw.split()
    return [p.strip() for p in parts if p.strip()]


def _to_int(raw: str) -> int:
    return int(raw.strip(), 0) if raw.strip().lower().startswith(("0x", "0o", "0b")) else int(raw.strip())


def _to_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(raw)
