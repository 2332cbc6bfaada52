"""Attack and anomaly detection at the edge: learned from normal operation, run as a stream.

``train`` fits a :class:`~agent.detect.model.DetectorModel` from rows of normal operation;
:class:`~agent.detect.stream.StreamingDetector` scores one row at a time; the agent and
``hacksky-edge evaluate`` both feed it, so what is evaluated is what runs.
"""
