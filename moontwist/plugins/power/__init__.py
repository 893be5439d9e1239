"""Power devices: Moonraker's ``[power NAME]`` sections, device types as plugins, groups.

The plugin (:mod:`.plugin`) owns the endpoints, the device table and the
events; :mod:`.device` holds the state machine every type shares.  Each
built-in type is one module, registered through ``register_power_device_types``
exactly as a third-party type is: subclass :class:`PowerDriver` and
``register("my_type", MyDriver)``.
"""

from moontwist.plugins.power.device import DeviceError, DeviceTimeout, PowerDevice, PowerDriver
from moontwist.plugins.power.plugin import PowerPlugin

__all__ = ["PowerPlugin", "PowerDriver", "PowerDevice", "DeviceError", "DeviceTimeout"]
