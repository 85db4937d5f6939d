"""Test plugin: the ``events`` tracker, which notes the observer calls it gets and, when
closed, writes them to ``events.json`` in the run directory."""

import json

from automl_core import hookimpl


@hookimpl
def register_trackers(register):
    register("events", EventLog)


class EventLog:
    def __init__(self, run):
        self.path = run.run_dir.path / "events.json"
        self.seen = []

    @hookimpl
    def search_start(self, run):
        self.seen.append("search_start")

    @hookimpl
    def trial_epoch_end(self, run, spec, epoch, logs):
        self.seen.append(f"trial {spec.trial_id} epoch {epoch}")

    @hookimpl
    def search_end(self, run, leaderboard):
        self.seen.append("search_end")

    def close(self):
        self.path.write_text(json.dumps([*self.seen, "close"]))
