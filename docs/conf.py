"""Sphinx configuration for refgrad's documentation (``nox -s docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "refgrad"
author = "refgrad developers"
copyright = "2026, refgrad developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "refgrad_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_type_aliases = {"Params": "refgrad.ops.Params"}

# No intersphinx: the build must work offline, so references to the standard library stay plain text.

html_theme = "furo"
html_title = "refgrad"
