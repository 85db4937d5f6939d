"""The search engine: settings, run state, the scheduling policy, the oracle adapter, the loop."""
