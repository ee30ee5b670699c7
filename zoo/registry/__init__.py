"""The plugin system: hook specifications, model cards and the registry that collects plugins."""
