"""The library's version, in a module of its own so that submodules can read it without
importing the package (and so without importing every submodule ``triage/__init__.py`` loads).

Reason to change: a release.
"""
__version__ = "0.1.0"
