"""The ``automl`` command line: the parser and the built-in subcommands."""
