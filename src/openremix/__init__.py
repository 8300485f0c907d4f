"""openremix: a self-hosted image remix API, wire-compatible with the hosted Ideogram 3 Remix API."""

__version__ = "0.1.0"
