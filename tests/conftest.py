"""Suite-wide settings: under CI (`CI=true`) property tests replay a fixed set of examples.

Locally they draw new examples every run (that is how they find bugs); CI must not fail on a
case nobody has seen yet, so there the examples are derived from each test's name instead.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")
