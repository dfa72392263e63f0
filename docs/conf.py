"""Sphinx configuration: the collector's documentation, written in Markdown (MyST).

Built in CI in strict mode (`-W -n`): a warning, a broken cross-reference or a page missing from
the table of contents fails the build.
"""

project = "openlesson-collector"
author = "openlesson-collector developers"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # `[text](page.md#a-heading)` links are checked like page links
html_theme = "furo"
html_title = "openlesson-collector"
