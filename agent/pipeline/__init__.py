"""The running agent: schedule polls, ingest, buffer, deliver to sinks, report status."""
