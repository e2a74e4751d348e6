"""Sphinx configuration: the guide pages (MyST Markdown) and the API reference
(autodoc over the numpy-style docstrings, through napoleon). Built in CI with
warnings as errors: ``python -m sphinx -W -b html docs docs/_build``."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # fastlstm.keras imports keras

import fastlstm  # noqa: E402  (the installed package is what is documented)

project = "fastlstm"
release = version = fastlstm.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon",
              "sphinx.ext.intersphinx"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {}
myst_heading_anchors = 3
intersphinx_mapping = {}
html_theme = "alabaster"
html_title = f"fastlstm {release}"
nitpicky = False
