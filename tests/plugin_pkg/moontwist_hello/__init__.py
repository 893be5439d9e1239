"""A third-party plugin: a config section, an endpoint and a notification."""

from moontwist.api.args import Arg
from moontwist.api.registry import Endpoint
from moontwist.hookspecs import hookimpl


class HelloPlugin:
    """Reads [hello], serves hello.greet, and announces every greeting."""

    @hookimpl
    def configure(self, server, config):
        self.server = server
        section = config.section("hello")
        self.greeting = section.get("greeting", "Hello")
        self.repeat = section.getint("repeat", 1, minval=1, maxval=5)

    @hookimpl
    def register_endpoints(self, register):
        register(
            Endpoint(
                "hello.greet",
                self.greet,
                "/hello/greet",
                ("GET", "POST"),
                args=(Arg("name", required=True, description="who to greet"),),
                description="Greet someone",
            )
        )

    def greet(self, request):
        text = " ".join([f"{self.greeting}, {request.args['name']}!"] * self.repeat)
        self.server.notify("notify_hello_greeted", {"name": request.args["name"], "text": text})
        return {"text": text}


class BrokenPlugin:
    """Fails while loading; the server must list it and keep running."""

    def __init__(self):
        raise RuntimeError("this plugin is broken on purpose")
