"""Simulated live-chat widget traffic: a deterministic generator and its sinks.

:class:`~botstream.sim.generator.TrafficSimulator` makes the records (pure,
no I/O); :mod:`botstream.sim.sinks` writes them to JSONL files or Kafka;
:mod:`botstream.sim.runner` paces them in wall time. ``botstream simulate``
puts the three together.
"""

from botstream.sim.generator import Record, SimConfig, SimStats, TrafficSimulator

__all__ = ["Record", "SimConfig", "SimStats", "TrafficSimulator"]
