"""The shoal command line: one module per noun, all through the HTTP client (or the local loader)."""
