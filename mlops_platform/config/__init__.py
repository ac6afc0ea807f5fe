"""Per-environment configuration: pydantic models and the loader that reads config/*.yaml."""

from .loader import ConfigError, load_config, load_environments, parse_config
from .models import PlatformConfig, RemovalPolicy

__all__ = [
    "ConfigError",
    "PlatformConfig",
    "RemovalPolicy",
    "load_config",
    "load_environments",
    "parse_config",
]
