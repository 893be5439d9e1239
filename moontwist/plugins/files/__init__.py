"""File manager plugin: roots, file operations, streaming uploads, downloads and G-code metadata."""

from moontwist.plugins.files.plugin import FileManagerPlugin

__all__ = ["FileManagerPlugin"]
