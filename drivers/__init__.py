"""Protocol drivers: each reads one device's points and returns plain readings."""

from drivers.base import DeviceHealth, Driver, Reading, ReadError

__all__ = ["DeviceHealth", "Driver", "ReadError", "Reading"]
