"""The shoal command line: one module per noun, through the HTTP client (or the local loader)."""
