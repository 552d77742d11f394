"""shoal: a container orchestrator that runs Compose applications on one machine or many."""

__version__ = "0.1.0"
