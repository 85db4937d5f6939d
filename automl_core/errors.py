"""Errors the engine raises on purpose, each with the meaning the CLI gives it."""


class UsageError(Exception):
    """A mistake the user can fix (bad folder, flag or name): one line, exit code 2."""


class PluginError(UsageError):
    """A plugin registered something wrongly, e.g. a name another plugin already has."""
