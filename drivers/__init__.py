"""Protocol drivers: each reads one device's points and returns plain readings."""

from drivers.base import DeviceHealth, Driver, ReadError, Reading

__all__ = ["DeviceHealth", "Driver", "ReadError", "Reading"]
