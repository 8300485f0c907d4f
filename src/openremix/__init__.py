"""openremix: a self-hosted image remix API, wire-compatible with Ideogram 3 Remix."""

__version__ = "0.1.0"
