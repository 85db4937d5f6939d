"""Test plugin: architectures that fail in each way a real one can, and a slow one."""

import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf

from automl_core import hookimpl


@keras.saving.register_keras_serializable(package="automl_tests")
class Sleep(keras.layers.Layer):
    """Waits ``seconds`` per training step: trials take wall time without using the CPU."""

    def __init__(self, seconds=0.0, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds

    def call(self, x, training=False):
        if not training:
            return x

        def wait():
            time.sleep(self.seconds)
            return np.float32(0)

        pause = tf.numpy_function(wait, [], tf.float32, stateful=True)
        pause.set_shape(())
        return x + tf.cast(pause, x.dtype)  # adds zero; gradients flow through x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"seconds": self.seconds}


@hookimpl
def register_architectures(register):
    register("fails_in_build", fails_in_build)
    register("fails_after_first_epoch", fails_after_first_epoch)
    register("diverges", diverges)
    register("kills_itself", kills_itself)
    register("small", small, cost=0.5)
    register("sleepy", sleepy, cost=0.6)
    register("unaffordable", small, cost=1e9)  # said to train a billion times slower


def sleepy(hp, input_shape, num_classes):
    """``small`` with a pause of 0.4 s per training step."""
    model = small(hp, input_shape, num_classes)
    return keras.Model(model.input, Sleep(0.4)(model.output))


def small(hp, input_shape, num_classes):
    width = hp.Choice("width", [4, 8, 16], default=8)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(width, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def fails_in_build(hp, input_shape, num_classes):
    raise ValueError("cannot build this candidate")


def kills_itself(hp, input_shape, num_classes):
    os.kill(os.getpid(), signal.SIGKILL)


def _after_first_step(effect):
    """A layer that counts training steps and applies ``effect(x, steps)`` while training."""

    class AfterFirstStep(keras.layers.Layer):
        def build(self, input_shape):
            self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False)

        def call(self, x, training=False):
            if not training:
                return x
            self.steps.assign_add(1.0)
            return effect(x, self.steps)

        def compute_output_shape(self, input_shape):
            return input_shape

    return AfterFirstStep()


def fails_after_first_epoch(hp, input_shape, num_classes):
    def boom(x, steps):
        check = tf.debugging.assert_less(steps, 2.0, message="exploded after the first epoch")
        with tf.control_dependencies([check]):
            return tf.identity(x)

    return _wrap(input_shape, num_classes, _after_first_step(boom))


def diverges(hp, input_shape, num_classes):
    def poison(x, steps):
        return x * tf.where(steps > 1.0, float("nan"), 1.0)

    return _wrap(input_shape, num_classes, _after_first_step(poison))


def _wrap(input_shape, num_classes, layer):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    x = layer(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
