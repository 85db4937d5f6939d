"""Every search setting, declared once: ``SearchConfig``'s fields.

Each field carries a ``Setting`` in its metadata: the help text, how the command line
spells it (``--name-with-dashes``, a metavar) and the function that checks a value, given
as Python or as command-line text. The ``automl search`` options, the keywords of
``automl_core.search()``, ``docs/cli.md`` and the settings table of ``docs/api.md`` are
all generated from it, so a default or a choice is written here and nowhere else.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from automl_core.data.dataset import DEFAULT_VAL_SPLIT, MAX_AUTO_IMAGE_SIZE, MAX_DEFAULT_VAL
from automl_core.errors import UsageError
from automl_core.training.balance import CLASS_WEIGHTS, IMBALANCE_RATIO
from automl_core.training.trial import OBJECTIVES

PRECISIONS = ("auto", "float32", "mixed")
"""``precision``: see ``automl_core.training.precision.training_policy``."""
DEFAULT_TIME_BUDGET = 30 * 60.0
"""Seconds a search may take when neither ``max_trials`` nor ``time_budget`` is given."""
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"


def parse_duration(value: str | float) -> float:
    """Seconds from a number or text: ``90``, ``"90s"``, ``"10m"``, ``"1.5h"``, ``"1d"``,
    ``"1h30m"``. Anything else, or a duration that is not positive, is a ``UsageError``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UsageError(f"{value!r} is not a duration like 90s, 30m or 2h")
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif re.fullmatch(rf"(?:(?:{_NUMBER})[dhms])+", text):
            parts = re.findall(rf"({_NUMBER})([dhms])", text)
            seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
        else:
            raise UsageError(
                f"{value!r} is not a duration like 90s, 30m or 2h (seconds, or numbers with "
                "d, h, m or s: 1.5h, 1h30m)"
            )
    else:
        seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"a duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``1800`` -> ``"30m"``, ``5400`` -> ``"1h30m"``: the shortest text ``parse_duration``
    reads back as the same whole seconds."""
    left, text = round(seconds), ""
    for unit, size in DURATION_UNITS.items():
        count, left = divmod(left, size)
        text += f"{count}{unit}" if count else ""
    return text or "0s"


def integer(value: Any) -> int:
    """An ``int``, or text of one."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    raise UsageError(f"must be an integer, got {value!r}")


def positive_int(value: Any) -> int:
    number = integer(value)
    if number < 1:
        raise UsageError(f"must be a positive integer, got {value!r}")
    return number


def non_negative_int(value: Any) -> int:
    number = integer(value)
    if number < 0:
        raise UsageError(f"must be 0 or more, got {value!r}")
    return number


def image_side(value: Any) -> int:
    number = integer(value)
    if not 8 <= number <= 1024:
        raise UsageError(f"must be between 8 and 1024 pixels, got {value!r}")
    return number


def fraction(value: Any) -> float:
    try:
        number = float(value) if isinstance(value, int | float | str) else -1.0
    except ValueError:
        number = -1.0
    if not 0 < number < 1:
        raise UsageError(f"must be a number between 0 and 1, got {value!r}")
    return number


def text(value: Any) -> str:
    """A string, or a path given as one."""
    if isinstance(value, str | os.PathLike):
        return str(value)
    raise UsageError(f"must be text, got {value!r}")


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"must be True or False, got {value!r}")


def formats(value: Any) -> list[str]:
    """Names from a list, or from one comma-separated string; possibly none."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise UsageError(f"must be names, a list or one comma-separated string, got {value!r}")
    return [item.strip() for item in items if item.strip()]


def patterns(value: Any) -> list[str]:
    """At least one name or shell pattern, from a list or one comma-separated string."""
    names = formats(value)
    if not names:
        raise UsageError("needs at least one name or pattern")
    return names


@dataclass(frozen=True)
class Setting:
    """One search setting: what ``automl search --help`` and ``docs/api.md`` say about it,
    and how a value is checked."""

    help: str
    convert: Callable[[Any], Any] = text
    """Checks a value (Python, or command-line text) and returns it as the field's type."""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    default_text: str | None = None
    """How the help states a default that ``None`` stands for (resolved later)."""
    name: str = ""
    type: str = ""
    default: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def described_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if isinstance(self.default, list):
            return ",".join(self.default) or "none"
        return "none" if self.default is None else str(self.default)

    @property
    def help_text(self) -> str:
        return f"{self.help} (default: {self.described_default})"

    def check(self, value: Any) -> Any:
        """``value`` as the field's type; a ``UsageError`` naming the setting if it is wrong."""
        if value is None and self.default is None:
            return None
        try:
            value = self.convert(value)
        except UsageError as error:
            raise UsageError(f"{self.name}: {error}") from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(
                f"{self.name}: must be one of {', '.join(self.choices)}, got {value!r}"
            )
        return value


def setting(help: str, **spelling: Any) -> dict[str, Setting]:
    """The metadata that makes a ``SearchConfig`` field a setting (``spelling``: the rest
    of ``Setting``'s fields, name, type and default aside)."""
    return {"setting": Setting(help, **spelling)}


@dataclass
class SearchConfig:
    """A search's settings; saved as ``config.json``."""

    source: str
    """The image folder, or what the ``dataset`` loader reads."""
    dataset: str = field(default="image_folder", metadata=setting("dataset loader", metavar="NAME"))
    architectures: list[str] = field(
        default_factory=lambda: ["*"],
        metadata=setting(
            "architectures to try, shell patterns", convert=patterns, metavar="PATTERN,..."
        ),
    )
    augmenters: list[str] = field(
        default_factory=lambda: ["*"],
        metadata=setting(
            "augmenters to try, shell patterns", convert=patterns, metavar="PATTERN,..."
        ),
    )
    tuner: str = field(default="random", metadata=setting("search strategy", metavar="NAME"))
    time_budget: float | None = field(
        default=None,
        metadata=setting(
            "stop the whole search within this time, e.g. 90s, 30m, 1.5h, 1d; trials are cut at "
            "the deadline keeping their best epoch",
            convert=parse_duration,
            metavar="DURATION",
            default_text=f"{format_duration(DEFAULT_TIME_BUDGET)}, none when max_trials is given",
        ),
    )
    """Seconds the whole search may take, winner export included."""
    max_trials: int | None = field(
        default=None,
        metadata=setting(
            "most candidates to train",
            convert=positive_int,
            metavar="N",
            default_text="as many as the time budget allows",
        ),
    )
    epochs: int = field(
        default=20,
        metadata=setting(
            "most epochs per trial; early stopping may end sooner",
            convert=positive_int,
            metavar="N",
        ),
    )
    patience: int = field(
        default=5,
        metadata=setting(
            "epochs without improvement before a trial stops early",
            convert=non_negative_int,
            metavar="N",
        ),
    )
    max_failures: int = field(
        default=5,
        metadata=setting(
            "stop after this many failed trials in a row", convert=positive_int, metavar="N"
        ),
    )
    objective: str = field(
        default="val_accuracy",
        metadata=setting(
            "what ranks the trials (balanced_accuracy: the mean recall of the classes)",
            choices=tuple(OBJECTIVES),
        ),
    )
    class_weights: str = field(
        default="auto",
        metadata=setting(
            "balanced weighs each training image's loss by n / (classes x images of its "
            f"class); auto does so when the largest class has more than {IMBALANCE_RATIO:g}x "
            "the images of the smallest",
            choices=CLASS_WEIGHTS,
        ),
    )
    seed: int = field(default=0, metadata=setting("random seed", convert=integer, metavar="SEED"))
    val_split: float | None = field(
        default=None,
        metadata=setting(
            "share of each class held out for validation",
            convert=fraction,
            metavar="F",
            default_text=f"{DEFAULT_VAL_SPLIT}, at most {MAX_DEFAULT_VAL:,} images in all",
        ),
    )
    test: str | None = field(
        default=None,
        metadata=setting(
            "a separate test folder (class subfolders) to score the winner on", metavar="DIR"
        ),
    )
    image_size: int | None = field(
        default=None,
        metadata=setting(
            "side images are decoded at, and every candidate trained at",
            convert=image_side,
            metavar="PX",
            default_text=f"the folder's typical size, at most {MAX_AUTO_IMAGE_SIZE}",
        ),
    )
    batch_size: int | None = field(
        default=None,
        metadata=setting(
            "images per step",
            convert=positive_int,
            metavar="N",
            default_text="32 for small data, up to 256 for large",
        ),
    )
    executor: str = field(
        default="local",
        metadata=setting(
            "where trials run (local: a process per trial; inline: in this process)",
            metavar="NAME",
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=setting(
            "trials at once on the CPU, sharing its cores; on GPUs, per GPU",
            convert=positive_int,
            metavar="N",
            default_text="1; with ray, one per node",
        ),
    )
    devices: str | None = field(
        default=None,
        metadata=setting(
            "GPUs to use, e.g. 0,2",
            metavar="IDS",
            default_text="all visible; honours CUDA_VISIBLE_DEVICES",
        ),
    )
    precision: str = field(
        default="auto",
        metadata=setting(
            "mixed: float16 compute on GPUs, bfloat16 on CPUs; auto: bfloat16 on a CPU where "
            "a short probe (once per machine, cached) measures it clearly faster, for "
            "architectures declared mixed-precision safe, else float32. Saved models are "
            "float32",
            choices=PRECISIONS,
        ),
    )
    ray_address: str | None = field(
        default=None,
        metadata=setting(
            "Ray cluster to join with the ray executor",
            metavar="ADDR",
            default_text="start a local one",
        ),
    )
    offline: bool | None = field(
        default=None,
        metadata=setting(
            "download no pretrained weights: an architecture whose files are not in Keras's "
            "cache trains from random init, with a warning",
            convert=boolean,
            default_text="no; yes when AUTOML_OFFLINE=1",
        ),
    )
    weights_mirror: str | None = field(
        default=None,
        metadata=setting(
            "download pretrained weights files from this base URL, each by its file name, "
            "instead of where they are published (for air-gapped sites)",
            metavar="URL",
            default_text="AUTOML_WEIGHTS_MIRROR, else the published URLs",
        ),
    )
    out: str | None = field(
        default=None,
        metadata=setting(
            "run directory",
            metavar="RUN_DIR",
            default_text="runs/<timestamp>, linked as runs/latest",
        ),
    )
    refit: bool | None = field(
        default=None,
        metadata=setting(
            "retrain the winner on train+validation",
            convert=boolean,
            default_text="when the time budget allows",
        ),
    )
    export: list[str] = field(
        default_factory=list,
        metadata=setting(
            "also export the winner to these formats and verify them",
            convert=formats,
            metavar="FORMAT,...",
        ),
    )
    """Formats exported (and verified) after the search, beside ``winner/model.keras``."""
    quantize: str | None = field(
        default=None,
        metadata=setting(
            "quantize the formats that support it; tflite: float16, int8 (calibrated on "
            "training images) or dynamic (dynamic-range)",
            metavar="MODE",
        ),
    )
    track: list[str] = field(
        default_factory=list,
        metadata=setting(
            "log the search to these experiment trackers: tensorboard (event files in the run "
            "directory), mlflow (MLFLOW_TRACKING_URI, else MLflow's default)",
            convert=formats,
            metavar="NAME,...",
        ),
    )
    plugins: list[str] = field(default_factory=list)
    """The plugins' files or module names, so trial processes and a resume load them too."""

    def __post_init__(self) -> None:
        if self.time_budget is None and self.max_trials is None:
            self.time_budget = DEFAULT_TIME_BUDGET

    def validate(self) -> None:
        """Check every setting as the CLI and the API do; values become the field's type."""
        for item in SETTINGS.values():
            setattr(self, item.name, item.check(getattr(self, item.name)))


def _declared() -> dict[str, Setting]:
    found = {}
    for item in fields(SearchConfig):
        if "setting" in item.metadata:
            factory = item.default_factory
            default = item.default if factory is MISSING else factory()
            found[item.name] = replace(
                item.metadata["setting"], name=item.name, type=item.type, default=default
            )
    return found


SETTINGS: dict[str, Setting] = _declared()
"""Every setting by name, in the order ``--help`` and the docs list them."""
