"""The shoal server: HTTP API over the store, the controllers and the scheduler."""
