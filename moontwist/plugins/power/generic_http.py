"""``http``: Moonraker's generic HTTP device, driven by Jinja2 templates from the config.

Options: ``on_url``, ``off_url``, ``status_url`` (templates, with ``secrets``),
``request_template`` (optional: builds and sends the request), ``response_template``
(renders ``on`` or ``off``), ``user``/``password`` (HTTP basic authentication).

The templates' context is Moonraker's: ``command`` (on, off, status), ``urls``,
``http_request`` (``set_method``, ``set_url``, ``set_body``, ``add_header``,
``set_headers``, ``reset``, ``send``, ``last_response``), ``async_sleep``,
``log_debug``, ``secrets``; a response has ``json()``, ``has_error()``,
``raise_for_status()``, ``text``, ``content``, ``url``, ``final_url``,
``headers`` and ``status_code``.  They run in Jinja2's sandbox.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from moontwist import jsonutil
from moontwist.config import ConfigError, ConfigSection
from moontwist.plugins.power.device import DeviceError, PowerDevice, PowerDriver
from moontwist.plugins.power.httpclient import HTTPResponse
from moontwist.plugins.power.templates import TemplateFailed

__all__ = ["GenericHTTPDriver", "TemplateRequest", "TemplateResponse"]

COMMANDS = ("on", "off", "status")


class TemplateResponse:
    """An HTTP answer as templates see it (the shape of Moonraker's)."""

    def __init__(self, response: HTTPResponse) -> None:
        self.status_code = response.code
        self.headers = dict(response.headers)
        self.content = response.body
        self.text = response.text
        self.url = self.final_url = response.url
        self._response = response

    def json(self) -> Any:
        return self._response.json()

    def has_error(self) -> bool:
        return not 200 <= self.status_code < 300

    def raise_for_status(self, message: str | None = None) -> None:
        if self.has_error():
            raise TemplateFailed(message or f"HTTP {self.status_code} from {self.url.split('?')[0]}")


class TemplateRequest:
    """The ``http_request`` object of the templates: one request being built, then sent."""

    def __init__(self, driver: GenericHTTPDriver, command: str) -> None:
        self._driver = driver
        self._default_url = driver.urls[command]
        self._last: TemplateResponse | None = None
        self.reset()

    def reset(self) -> None:
        self._method = "GET"
        self._url = self._default_url
        self._body: Any = None
        self._headers: dict[str, str] = {}

    def set_method(self, method: str) -> None:
        self._method = str(method).upper()

    def set_url(self, url: str) -> None:
        self._url = _check_url(str(url))

    def set_body(self, body: Any) -> None:
        self._body = body

    def add_header(self, name: str, value: str) -> None:
        self._headers[str(name)] = str(value)

    def set_headers(self, headers: dict[str, str]) -> None:
        self._headers = {str(k): str(v) for k, v in dict(headers).items()}

    def last_response(self) -> TemplateResponse | None:
        return self._last

    def send(self, **kwargs: Any) -> Deferred:
        return ensureDeferred(self._send())

    async def _send(self) -> TemplateResponse:
        headers = dict(self._headers)
        body = self._body
        data: bytes | None = None
        if isinstance(body, (dict, list)):
            data = jsonutil.dumpb(body)
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            data = str(body).encode()
        response = await self._driver.device.http.request(
            self._method, self._url, headers=headers, data=data, auth=self._driver.basic_auth
        )
        self._last = TemplateResponse(response)
        return self._last


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise TemplateFailed(f"URL {url.split('?')[0]!r} is not http:// or https://")
    return url


class GenericHTTPDriver(PowerDriver):
    def __init__(self, device: PowerDevice, section: ConfigSection) -> None:
        super().__init__(device, section)
        templates = device.templates
        self.urls: dict[str, str] = {}
        for command in COMMANDS:
            url = templates.rendered(section, f"{command}_url")
            try:
                self.urls[command] = _check_url(url)
            except TemplateFailed as exc:
                raise ConfigError(f"Config error in section [{section.name}], option '{command}_url': {exc}") from None
        self.request_template = templates.option(section, "request_template", None, is_async=True)
        self.response_template = templates.option(section, "response_template", is_async=True)
        self.user = templates.rendered(section, "user", "") or ""
        self.password = templates.rendered(section, "password", "") or ""

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.user and self.password else None

    async def _run(self, command: str) -> str:
        request = TemplateRequest(self, command)
        context = {"command": command, "http_request": request, "urls": dict(self.urls)}
        if self.request_template is not None:
            await self.request_template.render_async(context)
            response = request.last_response()
            if response is None:
                raise DeviceError("request_template sent no request (call http_request.send())")
        else:
            response = await request.send()
        response.raise_for_status()
        result = (await self.response_template.render_async(context)).lower()
        if result not in ("on", "off"):
            raise DeviceError(f"response_template rendered {result[:80]!r}, not on or off")
        return result

    async def read_state(self) -> str:
        return await self._run("status")

    async def set_state(self, state: str) -> str:
        return await self._run(state)
