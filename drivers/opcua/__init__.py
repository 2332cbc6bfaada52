"""OPC UA client driver (asyncua): poll with batched Reads or subscribe, read-only."""

from drivers.opcua.driver import OpcUaDriver

__all__ = ["OpcUaDriver"]
