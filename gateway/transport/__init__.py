"""Transports move bytes between clients and sessions; they make no protocol decisions."""
