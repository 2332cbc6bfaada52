"""The durable disk buffer between polling and the sinks, and its recovery."""
