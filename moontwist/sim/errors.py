"""Exceptions shared by the simulator modules."""


class WebRequestError(Exception):
    """An API request failed; the message is sent to the client verbatim."""


class GCodeError(Exception):
    """A G-code command failed (Klippy's ``gcmd.error``)."""
