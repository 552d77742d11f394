"""The agent: registers its node, watches its tasks and drives a runtime (HTTP API only)."""
