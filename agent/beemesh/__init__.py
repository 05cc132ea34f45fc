"""Beemesh: a decentralized orchestrator for edge and IoT fleets."""

__version__ = "0.1.0"
