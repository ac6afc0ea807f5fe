"""Thin Lambda entry points wiring domain modules to adapters."""
