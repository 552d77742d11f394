"""Container drivers behind one protocol (`base.Runtime`): `process` runs host processes,
`fake` simulates containers for unit tests; `testsuite` is the conformance suite they all pass.

Import from the submodules (`shoal.runtime.base`, `.process`, …): this package stays empty so
the per-container monitor (`python -m shoal.runtime.monitor`) starts without loading pydantic.
"""
