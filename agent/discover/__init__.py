"""Device discovery: browse an OPC UA server or probe a Modbus device, read-only, and propose
device-map YAML (``hacksky-edge discover opcua|modbus``).

:mod:`.opcua` browses (Browse and Read services only), :mod:`.modbus` probes (function codes 1-4
only), :mod:`.guess` tells register types from the values read, :mod:`.render` writes the YAML
and :mod:`.cli` is the command line.
"""


class DiscoveryError(Exception):
    """Discovery could not run: the message is one line naming the target and the cause."""
