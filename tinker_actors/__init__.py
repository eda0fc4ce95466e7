"""tinker_actors: a trio-native client, job runner and local server for the Tinker API."""

from ._version import __version__

__all__ = ["__version__"]
