"""Centralino: a self-hosted softswitch and contact-centre engine in pure async Python."""

__version__ = "0.1.0"
