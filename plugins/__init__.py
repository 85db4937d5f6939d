"""First-party automl plugins, loaded before any third-party one."""
