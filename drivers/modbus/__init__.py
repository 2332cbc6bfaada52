"""Modbus TCP driver: request planning, decoding and shared connections (pymodbus)."""

from drivers.modbus.connection import ConnectionPool
from drivers.modbus.driver import ModbusDriver

__all__ = ["ConnectionPool", "ModbusDriver"]
