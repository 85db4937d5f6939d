"""Where trials run: the worker protocol, the local executors, the worker process."""
