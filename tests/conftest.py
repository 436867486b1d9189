"""Shared test configuration: hypothesis settings profiles.

``ci`` (the default) runs a few hundred examples per property; set
``REFGRAD_HYPOTHESIS_PROFILE=thorough`` for thousands. Neither has a deadline:
timings on a shared machine say nothing about correctness.
"""

from __future__ import annotations

import os

from hypothesis import settings

# Stated rather than inherited: when the CI variable is set, hypothesis itself loads its own "ci"
# profile (derandomized, no database) before this file runs, and a profile registered here would
# silently take its settings from it. On CI we want exactly that (the same examples on every run, so
# a CI result can be reproduced; a fresh machine keeps nothing anyway); locally, examples are random
# and a failing one is kept in .hypothesis/ and replayed first on the next run.
# (Read before the name "ci" is taken over below: until then it is hypothesis's own profile.)
_BASE = settings.get_profile("ci") if "CI" in os.environ else settings.get_profile("default")
settings.register_profile("ci", _BASE, max_examples=300, deadline=None)
settings.register_profile("thorough", _BASE, max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("REFGRAD_HYPOTHESIS_PROFILE", "ci"))
