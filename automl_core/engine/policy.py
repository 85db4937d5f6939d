"""The scheduling policy: what runs next, on how many images, and with how much time.

Pure on purpose: no TensorFlow, no keras-tuner, no files. The loop tells it what the trials
measured (``Outcome``) and asks it for the next trial (``Run``) with the time left; its
unit tests run on made-up paces in milliseconds.

Without a time budget the search is a plain sequence: each architecture at its defaults
(cheapest first), then the tuner's picks, every trial for ``--epochs``.

With a time budget it is successive halving measured in seconds, then one long run:

1. **Screening**: each candidate (every architecture at its defaults, with its own
   augmenter, topped up with tuner picks to at least ``MIN_SCREENED``) trains for the same
   few seconds on a slice of the training images. Guided candidates (pretrained
   backbones, guided by their embedding candidates: ``Candidate.guide``) share one slot,
   right after their guides: the backbone whose embedding scored best is screened.
   Equal seconds, not equal epochs: what is being ranked is what each candidate makes
   of the time it will get. These short runs are the probes too: each measures its
   candidate's steady seconds per image apart from its fixed cost (process start, data,
   build and compile, evaluation, saving).
2. **Second rung**: the best third (at least two) again, three times longer on three times
   the images, when that still fits in the screening share of the budget. On small data
   (the split has folds, ``DatasetSplit.fold``) the **fold rung** instead, in the time
   the final run will not need (small data trains fast) or what the screening share
   has left: the best third (at least two) screened again, as long and on as many
   images, on ``MIN_FOLDS`` folds and up to every fold, then more of the screened
   candidates as the time allows. A candidate's score is then its mean over the folds,
   and a mean within the noise of the best (one standard error of the difference,
   ``engine.spread``) ties with it: the cheaper candidate wins.
3. **Final**: the best candidate on all images, its learning-rate schedule planned to end
   at the deadline, at the largest size (``Sizes``: its registered ``sizes=`` and the
   training image size) that still trains ``FINAL_MIN_EPOCHS`` epochs in the time left
   (and at least as many images as it saw in the run that made it the best).
   Time left after it (it stopped at its epoch limit) continues it with a new cycle,
   unless it is at its ceiling.

A candidate whose first epoch cannot end in the time it would get never starts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from automl_core.engine.pace import Candidate, Outcome, Pace, Sizes
from automl_core.engine.spread import fold_scores, rank_within_noise

SCREEN_SHARE = 0.3
"""The share of the budget spent ranking candidates before the final run."""
MIN_SCREEN_SECONDS = 20.0
"""The least training time a screened candidate gets; fewer candidates are screened
(preferred, then cheapest first) when all of them would get less. Less than this, a
CIFAR-10 candidate is still near chance (6 s: 0.16 for airbench) and the ranking noise."""
MIN_SCREEN_SHARE = 0.025
"""...or this share of the budget, when more: a longer budget buys a surer ranking, not
more short looks. Short looks favour what learns fast over what learns far: screened
for 22 s in a 30-minute CIFAR-10 search (bfloat16, 2-core AMD EPYC), airbench ranked
below baseline_cnn (0.374 against 0.437), though given minutes it ends ten points
above it; given 52 s (a 10-minute search) it ranked first."""
MIN_SCREENED = 3
"""Screening tops the warm-start candidates up to this many with tuner picks."""
SCREEN_IMAGES = 1 / 8
"""The slice of the training images a first-rung candidate trains on (at least
``MIN_SCREEN_IMAGES``, at most all of them)."""
MIN_SCREEN_IMAGES = 2000
RUNG_GROWTH = 3
"""Each rung keeps the best 1/3 and gives them 3x the seconds and the images."""
FINAL_EPOCHS_FACTOR = 5
"""The final run trains as many epochs as fit before the deadline, up to this many
times ``--epochs``."""
FINAL_MIN_EPOCHS = 10
"""A larger size of the final candidate is chosen only when this many epochs of it fit,
and as many as it saw images in the run that made it the best (more on small data)."""
MIN_FOLDS = 3
"""The fewest folds the fold rung measures a candidate on (its screen included); with
less time than that takes, there is no fold rung."""
CONTINUE_AT_LEAST = 5
"""Epochs that must fit in the time left for the best trial to be continued."""
CEILING = 0.9999
"""Validation accuracy at which a candidate has nothing left to learn."""
SCREEN, SECOND, FOLDS = "screen", "second", "folds"
FINAL, CONTINUE, PLAIN = "final", "continue", "plain"
"""Stages: the rungs of a budgeted search, its final run and continuation, or a trial of
a search without a time budget."""


@dataclass(frozen=True)
class Run:
    """A trial the policy wants started. ``candidate`` ``None``: the tuner's pick."""

    candidate: Candidate | None
    stage: str
    epochs: int
    seconds: float | None = None
    """Its share of the budget: it plans its epochs to end within it (and stops there)."""
    train_images: int | None = None
    """Train on the first this many (shuffled) training images; ``None``: all."""
    continue_from: str | None = None
    """A trial whose weights this one starts from (a new learning-rate cycle)."""
    fold: int = 0
    """The fold it validates on (``DatasetSplit.fold``)."""
    fold_of: str | None = None
    """The screened trial whose candidate it measures on ``fold``."""
    final_of: str | None = None
    """The screened trial whose candidate it trains at its final size (a final or
    continued run)."""


@dataclass
class Policy:
    """Decides the next trial. ``candidates``: the warm-start portfolio, cheapest first."""

    candidates: list[Candidate]
    train_images: int
    epochs: int
    budget: float | None = None
    pace: Pace = field(default_factory=Pace)
    sizes: dict[str, list[Sizes]] = field(default_factory=dict)
    """By architecture, the sizes the final run chooses from, the most important first
    (of two choices that cost the same, the one larger in it wins)."""
    tuner: bool = True
    """Whether the tuner may pick candidates (after the portfolio, or in screening)."""
    folds: int = 1
    """The folds the data is split into (``DatasetSplit.fold_count``; 1: no fold rung)."""
    max_trials: int | None = None
    """The search's trial limit: a fold rung is planned only when it and the final fit."""
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Why a candidate was skipped or a stage left out, for the report."""
    _queue: list[Run] = field(default_factory=list)
    _stage: str | None = None
    _screen_end: float = 0.0
    """Remaining time at which screening must be over."""
    _screen_images: int = 0
    _screen_seconds: float = 0.0
    """What each first-rung candidate was given."""
    _measured: int = 1
    """The folds the fold rung measures each kept candidate on (1: no fold rung)."""

    def learn(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.pace.learn(outcome, self.size_cost(outcome.candidate))

    def size_cost(self, candidate: Candidate) -> float:
        """The training cost of ``candidate``'s sizes relative to its defaults'."""
        values = dict(candidate.values)
        return math.prod(sizes.cost(values) for sizes in self.sizes.get(candidate.architecture, ()))

    def epoch_seconds(self, candidate: Candidate, images: int) -> float | None:
        """One epoch of ``candidate`` on ``images`` and its validation pass."""
        return self.pace.epoch_seconds(candidate.architecture, images, self.size_cost(candidate))

    def next(self, remaining: float, running: int = 0) -> Run | None:
        """The trial to start now, or ``None``: wait for the running ones, or (nothing
        running) the search is done. ``remaining``: seconds to the deadline."""
        if self.budget is None:
            return self._next_plain()
        if self._stage is None:
            self._plan_screening(remaining)
        while True:
            if self._queue:
                run = self._steer(self._queue.pop(0))
                if self.fits(run, remaining):
                    return run
                continue
            if running:
                return None  # a rung ends before the next is planned
            if not self._advance(remaining):
                return None

    # --- without a budget ---------------------------------------------------------------

    def _next_plain(self) -> Run | None:
        if self._stage is None:
            self._stage = PLAIN
            self._queue = [Run(c, PLAIN, self.epochs) for c in self.candidates]
        if self._queue:
            return self._queue.pop(0)
        return Run(None, PLAIN, self.epochs) if self.tuner else None

    # --- with a budget ------------------------------------------------------------------

    def _plan_screening(self, remaining: float) -> None:
        """Screen as many candidates as get ``MIN_SCREEN_SECONDS`` (or ``MIN_SCREEN_SHARE``
        of the budget) each in the screening share; one or none: straight to the final."""
        self._stage = SCREEN
        share = SCREEN_SHARE * remaining
        least = max(MIN_SCREEN_SECONDS, MIN_SCREEN_SHARE * remaining)
        self._screen_end = remaining - share
        pool: list[Candidate | None] = [c for c in self.candidates if not c.guide]
        guided = [c for c in self.candidates if c.guide]
        if guided:  # one slot, right after their guides: the best guide's (``_steer``)
            guides = {c.guide for c in guided}
            after = (i + 1 for i, c in enumerate(pool) if c and c.architecture in guides)
            pool.insert(max(after, default=0), guided[0])
        if self.tuner:
            pool += [None] * max(0, MIN_SCREENED - len(pool))
        fixed = self.pace.fixed_seconds("")
        self._fit(pool, share, least, fixed)
        if len(pool) < 2:
            self._stage = SECOND  # nothing to rank: the next stage is the final run
            return
        seconds = self._screen_seconds = self._rung_seconds(share, slots(pool), fixed)
        slice_ = max(MIN_SCREEN_IMAGES, int(self.train_images * SCREEN_IMAGES))
        self._screen_images = min(self.train_images, slice_)
        self._queue = [
            Run(c and self._screened(c), SCREEN, self._many(), seconds, self._screen_images)
            for c in pool
        ]

    def _fit(self, pool: list[Candidate | None], share: float, least: float, fixed: float) -> None:
        """Shrink the fold rung to the trial limit, then ``pool`` until each screened
        candidate gets ``least`` seconds of the screening ``share`` (the variants of one
        architecture share a slot: they are cheap, as a frozen backbone's input sides
        are, or an architecture would not declare them). The fold rung is not
        planned in the share: on data small enough for folds the final run needs little,
        and the rung takes the time it leaves (``_plan_folds``)."""
        self._measured = self.folds
        while self._measured > MIN_FOLDS and not self._trials_fit(len(pool)):
            self._measured -= 1
        if not self._trials_fit(len(pool)):
            self._measured = 1
            self.notes.append("fold rung left out: it does not fit in the trial limit")
        while len(pool) > 1 and self._rung_seconds(share, slots(pool), fixed) < least:
            dropped = pool.pop()
            if dropped is not None:
                self.notes.append(
                    f"{dropped.architecture}: not screened (the budget screens "
                    f"{len(pool)} candidates)"
                )

    def _steer(self, run: Run) -> Run:
        """A screen of a guided candidate screens the one whose guide scored best (one
        slot for them all: the embedding's score says which backbone is worth it)."""
        if run.stage != SCREEN or run.candidate is None or not run.candidate.guide:
            return run
        scores: dict[str, float] = {}
        for o in self.outcomes:  # a guide screened in several variants: its best
            if o.completed:
                name = o.candidate.architecture
                scores[name] = max(o.score, scores.get(name, -math.inf))
        guided = [c for c in self.candidates if c.guide in scores]
        if not guided:  # no guide measured yet (several slots at once): as planned
            return run
        best = max(guided, key=lambda c: scores[c.guide])
        for other in guided:
            if other is not best:
                self.notes.append(
                    f"{other.architecture}: not screened ({best.guide} scored better "
                    f"than {other.guide})"
                )
        return replace(run, candidate=self._screened(best))

    def _screened(self, candidate: Candidate) -> Candidate:
        """``candidate`` at the sizes its architecture is screened at, where it fixes none."""
        values = dict(candidate.values)
        for sizes in self.sizes.get(candidate.architecture, ()):
            if sizes.screen is not None:
                values.setdefault(sizes.hyperparameter, sizes.screen)
        return replace(candidate, values=tuple(sorted(values.items())))

    def _rung_seconds(self, share: float, screened: int, fixed: float) -> float:
        """Training seconds for each of ``screened`` first-rung candidates, such that they
        (and, without folds, the next rung) fit in ``share`` with each trial's ``fixed``
        cost: from four candidates up the best third is given ``RUNG_GROWTH`` times as
        long."""
        kept = math.ceil(screened / RUNG_GROWTH) if screened > RUNG_GROWTH else 0
        if self.folds > 1:
            kept = 0
        return (share - (screened + kept) * fixed) / (screened + RUNG_GROWTH * kept)

    @staticmethod
    def _kept(screened: int) -> int:
        """How many screened candidates the fold rung measures on the other folds."""
        return min(screened, max(2, math.ceil(screened / RUNG_GROWTH)))

    def _trials_fit(self, screened: int) -> bool:
        """Whether the fold rung (if any) and the final fit in the trial limit."""
        if self._measured == 1 or self.max_trials is None:
            return True
        rung = self._kept(screened) * (self._measured - 1)
        return len(self.outcomes) + screened + rung + 1 <= self.max_trials

    def _advance(self, remaining: float) -> bool:
        """Plan the next stage from the outcomes of the last; ``False``: done."""
        if self._stage == SCREEN:
            self._stage = SECOND
            plan = self._plan_folds if self._measured > 1 else self._plan_second
            if plan(remaining):
                return True
        if self._stage == SECOND:
            self._stage = FINAL
            best = self._best((SCREEN, SECOND))
            if best is not None:
                # a larger size must not cut the training the candidate was judged on:
                # on 320 photos, 26 epochs at 128 pixels and width 64 (the largest of which
                # 10 fit) ranked below its 38-epoch screen at 64 pixels (0.662, 0.688)
                epochs = max(FINAL_MIN_EPOCHS, math.ceil(best.images_seen / self.train_images))
                sized = self._sized(best.candidate, remaining, epochs)
                self._queue = [Run(sized, FINAL, self._many(), final_of=best.trial_id)]
                return True
            if not self.outcomes and (self.candidates or self.tuner):
                first = self.candidates[0] if self.candidates else None  # None: the tuner's
                sized = first and self._sized(first, remaining)
                self._queue = [Run(sized, FINAL, self._many())]
                return True
        if self._stage in (FINAL, CONTINUE):
            return self._plan_continuation(remaining)
        return False

    def _sized(
        self, candidate: Candidate, remaining: float, epochs: int = FINAL_MIN_EPOCHS
    ) -> Candidate:
        """``candidate`` at the largest sizes that train ``epochs`` epochs on all images
        in the time left (the cheapest when none do). Sizes are chosen afresh:
        what it was screened at was a fidelity, not a choice. Not measured yet: its
        screening sizes."""
        dimensions = self.sizes.get(candidate.architecture, [])
        epoch = self.pace.epoch_seconds(candidate.architecture, self.train_images)
        if not dimensions or epoch is None:  # nothing measured yet: the cheap sizes
            return self._screened(candidate)
        time_left = remaining - self.pace.fixed_seconds(candidate.architecture)
        options = [
            dict(zip((d.hyperparameter for d in dimensions), values, strict=True))
            for values in itertools.product(*(d.costs for d in dimensions))
        ]

        def rank(option: dict) -> tuple:
            own = tuple(d.cost(option) for d in dimensions)
            return (math.prod(own), own)

        fitting = [o for o in options if epochs * epoch * rank(o)[0] <= time_left]
        chosen = max(fitting, key=rank) if fitting else min(options, key=rank)
        values = {k: v for k, v in candidate.values if k not in chosen}
        values |= {
            d.hyperparameter: chosen[d.hyperparameter] for d in dimensions if d.cost(chosen) != 1
        }
        if values != dict(candidate.values):  # defaults stay implicit, as in screening
            said = ", ".join(f"{name.rsplit('/', 1)[-1]}={v}" for name, v in chosen.items())
            fit = f"{epochs}+ epochs fit" if fitting else "the smallest"
            self.notes.append(
                f"{candidate.architecture}: final run at {said} ({fit} in {time_left:.0f} s)"
            )
        return replace(candidate, values=tuple(sorted(values.items())))

    def _plan_second(self, remaining: float) -> bool:
        ranked = self._ranked((SCREEN,))
        keep = math.ceil(len(ranked) / RUNG_GROWTH)
        if keep < 2:
            return False
        seconds = RUNG_GROWTH * self._screen_seconds
        fixed = max(self.pace.fixed_seconds(o.candidate.architecture) for o in ranked[:keep])
        if keep * (seconds + fixed) > remaining - self._screen_end:
            self.notes.append("second rung left out: it does not fit in the screening share")
            return False
        images = min(self.train_images, RUNG_GROWTH * self._screen_images)
        self._queue = [
            Run(o.candidate, SECOND, self._many(), seconds, images) for o in ranked[:keep]
        ]
        return True

    def _plan_folds(self, remaining: float) -> bool:
        """The best screened candidates again on folds 1 to ``_measured - 1``, one fold
        of every candidate after another (time running out leaves them even). Time the
        final run will not need (small data trains fast) measures the kept candidates on
        every fold, then more of the screened ones."""
        ranked = self._ranked((SCREEN,))
        kept, folds, most = self._kept(len(ranked)), min(MIN_FOLDS, self._measured), self._measured
        if kept < 2:
            return False
        trials_left = math.inf if self.max_trials is None else self.max_trials - len(self.outcomes)

        def fits(kept: int, folds: int) -> bool:  # and the final after them
            final = max(self._final_need(o) for o in ranked[:kept])
            room = max(remaining - self._screen_end, remaining - final)
            seconds = (folds - 1) * sum(o.wall_seconds for o in ranked[:kept])
            return seconds <= room and kept * (folds - 1) < trials_left

        if not fits(kept, folds):
            limited = kept * (folds - 1) >= trials_left
            why = (
                "it does not fit in the trial limit"
                if limited
                else "the final run needs the time left"
            )
            self.notes.append(f"fold rung left out: {why}")
            return False
        while folds < most and fits(kept, folds + 1):
            folds += 1
        while kept < len(ranked) and fits(kept + 1, folds):
            kept += 1
        self._measured = folds
        self._queue = [
            Run(
                o.candidate,
                FOLDS,
                self._many(),
                self._screen_seconds,
                self._screen_images,
                fold=fold,
                fold_of=o.trial_id,
            )
            for fold in range(1, folds)
            for o in ranked[:kept]
        ]
        return True

    def _final_need(self, best: Outcome) -> float:
        """What the final run of ``best``'s candidate and the refit after it take at most
        at the sizes it was judged at: the most epochs, twice (unmeasured: all the time).
        Larger sizes are for time left over."""
        epoch = self.epoch_seconds(best.candidate, self.train_images)
        if epoch is None:
            return math.inf
        fixed = self.pace.fixed_seconds(best.candidate.architecture)
        return 2 * (fixed + self._many() * epoch)

    def _plan_continuation(self, remaining: float) -> bool:
        """Continue the last final (or continued) trial with the time left, once it
        stopped at its epoch limit and is not at its ceiling."""
        last = next((o for o in reversed(self.outcomes) if o.stage in (FINAL, CONTINUE)), None)
        self._stage = CONTINUE
        if last is None or not last.completed:
            return False
        if (last.val_accuracy or 0.0) >= CEILING:
            self.notes.append(f"trial {last.trial_id} is at its ceiling: not continued")
            return False
        if last.epochs_trained < last.epochs_planned:
            return False  # it stopped for time (or a plateau): nothing more to give
        if last.stage == CONTINUE and not self._improved(last):
            self.notes.append(f"trial {last.trial_id} plateaued: not continued")
            return False
        epoch = self.epoch_seconds(last.candidate, self.train_images)
        needed = self.pace.fixed_seconds(last.candidate.architecture) + CONTINUE_AT_LEAST * (
            epoch or 0.0
        )
        if needed > remaining:
            return False
        self._queue = [
            Run(
                last.candidate,
                CONTINUE,
                self.epochs,
                continue_from=last.trial_id,
                final_of=last.final_of,
            )
        ]
        return True

    def retry(self, run: Run) -> None:
        """``run`` could not start now (the tuner had no trial ready): it comes next."""
        if run.stage != PLAIN:
            self._queue.insert(0, run)

    def fits(self, run: Run, remaining: float) -> bool:
        """Whether ``run``'s first epoch can end in the time it gets (unknown pace: yes)."""
        if run.candidate is None:
            return remaining > self.pace.fixed_seconds("")
        architecture = run.candidate.architecture
        epoch = self.epoch_seconds(run.candidate, run.train_images or self.train_images)
        fixed = self.pace.fixed_seconds(architecture)
        own = remaining if run.seconds is None else min(run.seconds + fixed, remaining)
        if fixed + (epoch or 0.0) <= own:
            return True
        self.notes.append(
            f"{architecture}: skipped for {run.stage}, one epoch (~{epoch:.0f} s) does not "
            f"fit in its {max(0.0, own - fixed):.0f} s"
            if epoch
            else f"{architecture}: skipped for {run.stage}, no time left"
        )
        return False

    def _ranked(self, stages: Iterable[str]) -> list[Outcome]:
        """Completed outcomes of ``stages``, best first by their score or, measured on
        several folds, their mean; ties within the noise go to the cheaper one. Once some
        candidates were measured on several folds, only they are ranked."""
        stages = tuple(stages)
        done = [o for o in self.outcomes if o.stage in stages and o.completed and not o.fold_of]
        scores = fold_scores(
            (o for o in self.outcomes if o.completed),
            lambda o: o.score,
            lambda o: o.trial_id,
            lambda o: o.fold_of,
        )
        several = [o for o in done if len(scores[o.trial_id].values) > 1]
        return rank_within_noise(
            several or done,
            lambda o: scores[o.trial_id],
            lambda o: o.seconds_per_image or math.inf,
        )

    def _best(self, stages: Iterable[str]) -> Outcome | None:
        """The best outcome of the latest of ``stages`` that has any."""
        for stage in reversed(tuple(stages)):
            ranked = self._ranked((stage,))
            if ranked:
                return ranked[0]
        return None

    def _improved(self, last: Outcome) -> bool:
        before = [o for o in self.outcomes if o.stage in (FINAL, CONTINUE) and o is not last]
        return not before or last.score > max(o.score for o in before)

    def _many(self) -> int:
        return FINAL_EPOCHS_FACTOR * self.epochs


def slots(pool: list[Candidate | None]) -> int:
    """Screening slots ``pool`` takes: one per architecture (its variants share it), one
    per tuner's pick (``None``)."""
    return len({c.architecture for c in pool if c}) + sum(c is None for c in pool)
