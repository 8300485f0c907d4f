"""Remix engines and the Engine protocol."""
