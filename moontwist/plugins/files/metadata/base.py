"""Core types of the metadata extractor: the file context, the parser ABC and
small regex-driven field extractors that the slicer modules combine."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

__all__ = [
    "CHUNK",
    "NUM",
    "INT",
    "REST",
    "FileContext",
    "SlicerParser",
    "FieldParser",
    "Extractor",
    "float_of",
    "floats_of",
    "int_of",
    "text_of",
    "list_of",
    "int_list_of",
    "join_names",
    "line_numbers",
    "line_sum",
]

#: Bytes read from each end of a file (Moonraker reads one MiB of each).
CHUNK = 1024 * 1024

# Capture groups used inside field patterns.  NUM deliberately accepts only
# digits and one dot (no sign, no exponent), as Moonraker's extractor does:
# "2.14748e+06" yields 2.14748 and "-2.1e+06" yields nothing.
NUM = r"(\d*\.?\d+)"
INT = r"(\d+)"
REST = r"(.*)"

_NUMBER = re.compile(NUM)
_FIRST_CMD = re.compile(r"\n[MG]\d+\s.*\n")
_CMD_LINE = re.compile(r"[MG]\d+[^\S\n]")
_BARE_CMD = re.compile(r"[MG]\d+")


class FileContext:
    """What a parser sees of one file: its path, size and decoded text.

    ``header`` is the first MiB of text and ``footer`` the last MiB (both are
    the whole text for files up to 1 MiB; they overlap for files up to
    2 MiB).  ``text`` is header and footer joined without duplication for
    files up to 2 MiB, otherwise the first MiB followed by the last MiB.
    """

    def __init__(
        self, path: str, size: int, text: str, *, thumbs: bool = True, root: str | None = None, log: Logger | None = None
    ) -> None:
        self.path = path
        self.size = size
        self.text = text
        self.header = text[:CHUNK]
        self.footer = text[-CHUNK:]
        self.thumbs = thumbs
        self.root = root  # thumbnails are written only inside this folder (default: the file's own)
        # the log of the server asking (extraction runs in its worker threads)
        self.log = log if log is not None else Logger(namespace="moontwist.plugins.files.metadata")
        self._ascii: bool | None = None

    @classmethod
    def load(cls, path: str, *, thumbs: bool = True, root: str | None = None, log: Logger | None = None) -> FileContext:
        """Read the head (and the tail, if any) of ``path``."""
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            head = f.read(CHUNK)
            tail = b""
            if size > CHUNK:
                f.seek(max(CHUNK, size - CHUNK))
                tail = f.read()
        text = head.decode(errors="ignore") + tail.decode(errors="ignore")
        return cls(path, size, text, thumbs=thumbs, root=root, log=log)

    def region(self, where: str) -> str:
        """``"head"``, ``"tail"`` or ``"all"`` text."""
        if where == "head":
            return self.header
        if where == "tail":
            return self.footer
        return self.text

    def _byte_len(self, s: str) -> int:
        if self._ascii is None:
            self._ascii = self.text.isascii()
        return len(s) if self._ascii else len(s.encode())

    def gcode_start_byte(self) -> int | None:
        """Offset of the newline before the first ``G``/``M`` command line."""
        m = _FIRST_CMD.search(self.header)
        if m is None:
            return None
        return self._byte_len(self.header[: m.start()])

    def gcode_end_byte(self) -> int | None:
        """Offset just past the last ``G``/``M`` command line.

        A line counts when it starts with a command word followed by a blank;
        a line right after a bare command word (``M84``) counts as well.
        """
        data = self.footer
        line_end = data.rfind("\n") + 1  # just past the newline ending a line
        while line_end > 0:
            nl = data.rfind("\n", 0, line_end - 1)  # newline opening the line
            if nl < 0:
                return None
            prev_nl = data.rfind("\n", 0, nl)
            if _CMD_LINE.match(data, nl + 1, line_end - 1) or (
                prev_nl >= 0 and _BARE_CMD.fullmatch(data, prev_nl + 1, nl)
            ):
                return self.size - self._byte_len(data[line_end:])
            line_end = nl + 1
        return None

    def thumbnails(self) -> list[dict[str, Any]] | None:
        """Decode embedded thumbnails into ``.thumbs/`` (None when disabled/absent)."""
        if not self.thumbs:
            return None
        from .thumbnails import extract_thumbnails

        return extract_thumbnails(self.path, self.text, self.log, root=self.root)


class SlicerParser(ABC):
    """One slicer family.  Third-party plugins subclass this and pass
    instances via ``extract_metadata(..., parsers=...)``."""

    #: Name reported as ``slicer`` unless ``parse`` returns one.
    name: str = "Unknown"

    @abstractmethod
    def detect(self, head: str, tail: str) -> bool:
        """True when the file (its first and last MiB of text) is ours."""

    @abstractmethod
    def parse(self, ctx: FileContext) -> dict[str, Any]:
        """Extracted fields; may include ``slicer`` and ``slicer_version``.

        Fields whose value is unknown must be left out, not set to None.
        """


Extractor = Callable[[FileContext], Any]


class FieldParser(SlicerParser):
    """A parser driven by a table of field extractors.

    Subclasses set ``fields`` (field name -> extractor, evaluated in order)
    and implement :meth:`identify`, which returns ``(name, version)``.
    """

    fields: dict[str, Extractor] = {}
    #: Whether embedded thumbnails are extracted for this slicer.
    with_thumbnails: bool = True

    def identify(self, head: str) -> tuple[str, str] | None:
        """``(slicer name, version)`` when the header is ours, else None."""
        raise NotImplementedError

    def detect(self, head: str, tail: str) -> bool:
        """Identify from the header, as Moonraker does."""
        return self.identify(head) is not None

    def parse(self, ctx: FileContext) -> dict[str, Any]:
        """Run the field table, dropping fields that came out as None."""
        ident = self.identify(ctx.header) or (self.name, "?")
        out: dict[str, Any] = {"slicer": ident[0], "slicer_version": ident[1]}
        for key, value in (
            ("gcode_start_byte", ctx.gcode_start_byte()),
            ("gcode_end_byte", ctx.gcode_end_byte()),
        ):
            if value is not None:
                out[key] = value
        for key, get in self.fields.items():
            value = get(ctx)
            if value is not None:
                out[key] = value
        if self.with_thumbnails:
            thumbs = self.thumbnails(ctx)
            if thumbs is not None:
                out["thumbnails"] = thumbs
        return out

    def thumbnails(self, ctx: FileContext) -> list[dict[str, Any]] | None:
        """Thumbnail list for the file (override for slicer-specific sources)."""
        return ctx.thumbnails()


# -- field extractor factories ------------------------------------------------


def float_of(pattern: str, where: str = "tail") -> Extractor:
    """First capture of ``pattern`` as float."""
    rx = re.compile(pattern)

    def get(ctx: FileContext) -> float | None:
        m = rx.search(ctx.region(where))
        return float(m.group(1)) if m else None

    return get


def floats_of(
    pattern: str, where: str, combine: Callable[[list[float]], Any]
) -> Extractor:
    """``combine`` applied to every capture of ``pattern`` as floats (None if none)."""
    rx = re.compile(pattern)

    def get(ctx: FileContext) -> Any:
        found = rx.findall(ctx.region(where))
        return combine([float(v) for v in found]) if found else None

    return get


def int_of(pattern: str, where: str = "tail") -> Extractor:
    """First capture of ``pattern`` as int."""
    rx = re.compile(pattern)

    def get(ctx: FileContext) -> int | None:
        m = rx.search(ctx.region(where))
        return int(m.group(1)) if m else None

    return get


def _clean(value: str) -> str:
    return value.rstrip("\r").strip('"')


def text_of(pattern: str, where: str = "tail") -> Extractor:
    """First capture of ``pattern`` with surrounding double quotes removed.

    An empty value is kept as ``""`` (Moonraker reports e.g. an empty
    ``printer_model`` that way).
    """
    rx = re.compile(pattern)

    def get(ctx: FileContext) -> str | None:
        m = rx.search(ctx.region(where))
        return _clean(m.group(1)) if m else None

    return get


def line_sum(pattern: str, where: str, scale: float = 1) -> Extractor:
    """Sum of every number (times ``scale``) in the first capture of ``pattern``."""
    rx = re.compile(pattern)
    num = _NUMBER

    def get(ctx: FileContext) -> float | None:
        m = rx.search(ctx.region(where))
        values = num.findall(m.group(1)) if m else []
        if not values:
            return None
        if scale == 1:
            return sum(float(v) for v in values)
        return sum(float(v) * scale for v in values)

    return get


def line_numbers(pattern: str, where: str) -> Extractor:
    """Every number in the first capture of ``pattern`` (None if none)."""
    rx = re.compile(pattern)
    num = _NUMBER

    def get(ctx: FileContext) -> list[float] | None:
        m = rx.search(ctx.region(where))
        values = num.findall(m.group(1)) if m else []
        return [float(v) for v in values] or None

    return get


_ITEM = re.compile(r'\s*"(?P<q>(?:\\"|[^"])*)"\s*|(?P<p>[^,;]+)')


def split_items(value: str) -> list[str]:
    """Split a ``,``/``;`` separated config value; double-quoted items may
    contain separators and ``\\"``.  Empty items are dropped."""
    items: list[str] = []
    for m in _ITEM.finditer(value):
        quoted = m.group("q")
        item = quoted.replace('\\"', '"').strip() if quoted is not None else m.group("p").strip()
        if item:
            items.append(item)
    return items


def list_of(pattern: str, where: str = "tail") -> Extractor:
    """Items of the first capture of ``pattern``; ``[]`` when absent."""
    rx = re.compile(pattern)

    def get(ctx: FileContext) -> list[str]:
        m = rx.search(ctx.region(where))
        return split_items(m.group(1)) if m and m.group(1) else []

    return get


def int_list_of(pattern: str, where: str = "tail") -> Extractor:
    """Like :func:`list_of` with int items; None if an item is not an int."""
    get_items = list_of(pattern, where)

    def get(ctx: FileContext) -> list[int] | None:
        try:
            return [int(v) for v in get_items(ctx)]
        except ValueError:
            return None

    return get


def join_names(get_items: Extractor) -> Extractor:
    """One name as a string; several as a JSON array string (Moonraker's form)."""
    from moontwist import jsonutil

    def get(ctx: FileContext) -> str | None:
        items: Iterable[str] = get_items(ctx)
        items = list(items)
        if not items:
            return None
        if len(items) == 1:
            return items[0]
        # Moonraker emits Python's default json.dumps spacing here.
        return "[" + ", ".join(jsonutil.dumps(v) for v in items) + "]"

    return get
