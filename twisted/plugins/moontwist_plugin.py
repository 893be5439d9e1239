from twisted.application.service import ServiceMaker

moontwist = ServiceMaker(
    "moontwist",
    "moontwist.tap",
    "A Moonraker-compatible API server for Klipper 3D printers",
    "moontwist",
)
