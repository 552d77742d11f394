"""The typed HTTP client: the CLI's and the agent's only way into shoal."""

from shoal.client.http import AsyncClient, Client, resolve_address, resolve_token

__all__ = ["AsyncClient", "Client", "resolve_address", "resolve_token"]
