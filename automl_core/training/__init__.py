"""One trial's training: build, recipe, schedules, layers, TTA, evaluation."""
