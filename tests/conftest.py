"""Shared test configuration: hypothesis settings profiles.

``ci`` (the default) runs a few hundred examples per property; set
``REFGRAD_HYPOTHESIS_PROFILE=thorough`` for thousands. Neither has a deadline:
timings on a shared machine say nothing about correctness.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("REFGRAD_HYPOTHESIS_PROFILE", "ci"))
