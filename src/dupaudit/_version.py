"""The version, in a leaf module: every package can read it without importing the public API in dupaudit/__init__."""

__version__ = "0.1.0"
