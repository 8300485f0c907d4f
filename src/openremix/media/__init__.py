"""Turning image strings into pixels, and storing outputs."""
