"""HackSky Edge: the gateway daemon (scheduler, pipeline, checks, buffer, writer, CLI)."""

__version__ = "0.1.0"
