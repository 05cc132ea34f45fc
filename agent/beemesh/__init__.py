"""Beemesh: a decentralized orchestrator for edge and IoT fleets."""

from beemesh import import_guard

__version__ = "0.1.0"

# Before anything imports libp2p: load only the parts of py-libp2p Beemesh runs.
import_guard.install()
