"""The search: settings, run state, the scheduling policy, the oracle adapter, the loop."""
