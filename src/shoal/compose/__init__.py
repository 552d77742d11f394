"""The Compose loader: load → interpolate → validate → merge/extends/include → normalise → model."""
