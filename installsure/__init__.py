"""InstallSure backend: one Twisted reactor process serving the HTTP API and background jobs."""

from installsure._version import __version__

__all__ = ["__version__"]
