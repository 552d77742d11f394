"""Secrets and configs: encrypted at rest in the store, delivered only to the agents that run
the tasks using them (`crypto` keys and envelopes, `records` the models, `store` the keys in the
cluster store, `deploying` what a deploy writes)."""
