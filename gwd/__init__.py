"""gwd: a self-hosted API gateway daemon."""

__version__ = "0.1.0"
