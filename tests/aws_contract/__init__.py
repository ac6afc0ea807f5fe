"""Offline checks of what AWS would refuse and moto accepts: permissions and event shapes."""
