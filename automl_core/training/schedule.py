"""A learning-rate schedule whose length training can re-plan as it learns its pace.

A time-budgeted trial only knows how many epochs fit once it has timed one. A schedule
of fixed length would then be cut off with its learning rate still high; this one
stretches or shrinks to end exactly where training will end.
"""

from __future__ import annotations

import math

import keras
from keras import ops


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start`` to ``peak`` over ``warmup`` of the steps, then cosine
    decay to zero; ``replan(total_steps)`` changes the length while training."""

    def __init__(self, start: float, peak: float, warmup: float, total_steps: int):
        self.start, self.peak, self.warmup = float(start), float(peak), float(warmup)
        self.total_steps = keras.Variable(
            float(max(1, total_steps)), dtype="float32", trainable=False, name="total_steps"
        )

    def replan(self, total_steps: int) -> None:
        self.total_steps.assign(float(max(1, total_steps)))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        total = ops.convert_to_tensor(self.total_steps)
        warm = ops.round(total * self.warmup)
        rising = self.start + (self.peak - self.start) * step / ops.maximum(warm, 1.0)
        progress = ops.clip((step - warm) / ops.maximum(total - warm, 1.0), 0.0, 1.0)
        falling = self.peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warm, rising, falling)

    def get_config(self) -> dict:
        return {
            "start": self.start,
            "peak": self.peak,
            "warmup": self.warmup,
            "total_steps": int(self.total_steps.numpy()),
        }
