"""Built-in benchmark suites (TOML files), listed by ``sapabench list suites``."""
