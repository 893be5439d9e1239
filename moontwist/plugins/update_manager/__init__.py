"""The update manager plugin: ``machine.update.*`` over git repos, releases, Python packages and system packages."""

from moontwist.plugins.update_manager.plugin import UpdateManagerPlugin

__all__ = ["UpdateManagerPlugin"]
