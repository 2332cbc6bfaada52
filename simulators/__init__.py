"""Built-in device simulators (pymodbus servers) so everything runs without hardware.

Depends on nothing in ``agent/``; encodes values independently of the drivers' decoder.
"""
