"""The one schema: models shared by the Compose loader, store, API, scheduler, agent and CLI."""
