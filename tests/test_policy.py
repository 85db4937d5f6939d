"""The scheduling policy with made-up paces: no TensorFlow, no keras-tuner, milliseconds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from automl_core.engine.pace import Candidate, Outcome, Pace, Sizes
from automl_core.engine.policy import (
    CONTINUE,
    FINAL,
    FOLDS,
    PLAIN,
    SCREEN,
    SECOND,
    Policy,
    Run,
)
from automl_core.engine.spread import Scores, rank_within_noise

CNN = Candidate("baseline_cnn", "basic", cost=1)
RESNET = Candidate("resnet", "flip", cost=4)
VIT = Candidate("vit", "flip", cost=15)
IMAGES = 45_000


def policy(budget: float | None = 600.0, candidates=(CNN, RESNET, VIT), **kwargs) -> Policy:
    return Policy(
        list(candidates),
        train_images=IMAGES,
        epochs=20,
        budget=budget,
        pace=Pace({c.architecture: c.cost for c in candidates}),
        **kwargs,
    )


def outcome(run, trial_id: str, score: float, *, per_image: float, fixed: float = 6.0, **kw):
    """What ``run`` would give: it trains for its seconds (or ``epochs`` epochs) at
    ``per_image`` seconds per image (its epoch limit at most), plus ``fixed`` seconds of
    start-up and saving."""
    images = run.train_images or IMAGES
    epochs = kw.pop("epochs", None)
    if epochs is None:
        in_time = int(run.seconds / (per_image * images)) if run.seconds else run.epochs
        epochs = max(1, min(run.epochs, in_time))
    train = epochs * per_image * images
    return Outcome(
        trial_id,
        run.candidate,
        run.stage,
        completed=True,
        score=score,
        val_accuracy=score,
        wall_seconds=train + fixed,
        train_seconds=train,
        seconds_per_image=per_image,
        epochs_trained=epochs,
        epochs_planned=kw.pop("planned", run.epochs),
        images_seen=epochs * images,
    )


def drain(p: Policy, remaining: float) -> list:
    runs = []
    while (run := p.next(remaining, running=len(runs))) is not None:
        runs.append(run)
    return runs


def test_the_leaderboard_knows_the_screening_stages():
    from automl_core.engine.run import SCREENING

    assert SCREENING == (SCREEN, SECOND)


def test_policy_imports_neither_tensorflow_nor_keras_tuner():
    code = (
        "import sys, automl_core.engine.policy; "
        "assert not {'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules), sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_a_budget_defaults_come_first_then_the_tuner():
    p = policy(budget=None)
    runs = [p.next(1e9) for _ in range(5)]
    assert [r.candidate for r in runs] == [CNN, RESNET, VIT, None, None]
    assert {r.stage for r in runs} == {PLAIN} and {r.epochs for r in runs} == {20}


def test_screening_gives_every_candidate_equal_seconds_on_a_slice():
    p = policy()
    screen = drain(p, 600)
    assert [r.candidate for r in screen] == [CNN, RESNET, VIT]
    assert {r.stage for r in screen} == {SCREEN}
    assert len({r.seconds for r in screen}) == 1
    assert screen[0].train_images < IMAGES
    # the screening share of the budget holds their seconds and fixed costs
    assert sum(r.seconds for r in screen) + 3 * 8 <= 0.3 * 600 + 1e-6


def test_a_slow_first_trial_does_not_make_it_skip_the_strongest_candidate():
    """The first trial's epoch was slow (compile, a cold process): resnet, priced from it
    by its cost, is still screened, and it wins the final run on its score."""
    p = policy(budget=600)
    cnn_run = p.next(600)
    p.learn(outcome(cnn_run, "0", 0.55, per_image=0.002, fixed=40.0))  # slow first trial
    resnet_run = p.next(550)
    assert resnet_run.candidate == RESNET
    p.learn(outcome(resnet_run, "1", 0.70, per_image=0.003))
    final = p.next(500)  # one vit epoch on the slice: 15 x 0.002 x 5,625 = 169 s > 52 s
    assert any("vit" in note and "does not fit" in note for note in p.notes)
    assert final.stage == FINAL and final.candidate == RESNET and final.train_images is None


def test_compile_time_is_not_charged_per_epoch():
    """A probe that spent 50 s building and compiling and 10 s training 5,000 images:
    an epoch of 45,000 images is estimated at 90 s, not at 60 s x 9."""
    pace = Pace()
    probe = Outcome(
        "0",
        CNN,
        SCREEN,
        completed=True,
        wall_seconds=60.0,
        train_seconds=10.0,
        seconds_per_image=10.0 / 5000,
        epochs_trained=1,
    )
    pace.learn(probe)
    assert pace.epoch_seconds("baseline_cnn", 45_000) == 90.0
    assert pace.fixed_seconds("baseline_cnn") == 50.0


def test_no_trial_starts_when_its_first_epoch_cannot_end_before_the_deadline():
    p = policy(candidates=(CNN,))
    p.pace.learn(outcome(p.next(600), "0", 0.6, per_image=0.001, epochs=1))
    # one epoch of all images takes 45 s + 6 s fixed: 40 s left is not enough
    p2 = policy(candidates=(CNN,))
    p2.pace = p.pace
    assert p2.next(40.0) is None
    assert any("does not fit" in note for note in p2.notes)
    assert p2.next(60.0) is None  # a plan once dropped stays dropped
    p3 = policy(candidates=(CNN,))
    p3.pace = p.pace
    run = p3.next(60.0)
    assert run is not None and run.stage == FINAL


def test_second_rung_keeps_the_best_third_with_three_times_the_seconds():
    many = [Candidate(f"net{i}", "basic", cost=1) for i in range(5)]
    p = policy(budget=3600, candidates=many)
    screen = drain(p, 3600)
    assert len(screen) == 5
    for i, run in enumerate(screen):
        # a trial cut by its time mid-epoch: its measured training is not its planned
        p.learn(outcome(run, str(i), 0.5 + 0.01 * i, per_image=0.0005 * (1 + 10 * (i == 0))))
    second = drain(p, 3600 - sum(o.wall_seconds for o in p.outcomes))
    assert [r.stage for r in second] == [SECOND, SECOND]
    assert [r.candidate.architecture for r in second] == ["net4", "net3"]
    assert second[0].seconds == pytest.approx(3 * screen[0].seconds)
    assert second[0].train_images == 3 * screen[0].train_images
    p.learn(outcome(second[0], "6", 0.70, per_image=0.0005))
    p.learn(outcome(second[1], "7", 0.75, per_image=0.0005))
    final = p.next(3600 - sum(o.wall_seconds for o in p.outcomes))
    assert final.stage == FINAL and final.candidate.architecture == "net3"


def test_a_longer_budget_screens_longer_not_more():
    """Each screened candidate trains for at least 2.5% of the budget: a 30-minute search
    screens four candidates for 49 s each, not nine for 22 s (too short to tell what
    learns far from what learns fast)."""
    many = [Candidate(f"net{i}", "basic", cost=1) for i in range(10)]
    screen = drain(policy(budget=1800, candidates=many), 1800)
    assert len(screen) == 4
    assert all(run.seconds >= 0.025 * 1800 for run in screen)
    assert len(drain(policy(budget=600, candidates=many), 600)) == 3  # 20 s at least


def test_a_tiny_budget_skips_screening_and_runs_the_cheapest_candidate_to_the_deadline():
    p = policy(budget=45)
    run = p.next(45)
    assert run.stage == FINAL and run.candidate == CNN and run.seconds is None
    assert any("not screened" in note for note in p.notes)


def test_a_candidate_at_its_ceiling_is_not_continued():
    p = policy(budget=45)
    final = p.next(45)
    p.learn(outcome(final, "0", 1.0, per_image=1e-5, epochs=100, planned=100))
    assert p.next(30) is None
    assert any("ceiling" in note for note in p.notes)


def test_a_final_that_stopped_at_its_epoch_limit_is_continued_once_it_improves():
    p = policy(budget=45)
    final = p.next(45)
    p.learn(outcome(final, "0", 0.8, per_image=1e-5, epochs=100, planned=100))
    more = p.next(30)
    assert more.stage == CONTINUE and more.continue_from == "0"
    p.learn(outcome(more, "1", 0.8, per_image=1e-5, epochs=20, planned=20))  # no better
    assert p.next(25) is None
    assert any("plateau" in note for note in p.notes)


def test_a_final_cut_by_the_deadline_is_not_continued():
    p = policy(budget=45)
    final = p.next(45)
    p.learn(outcome(final, "0", 0.8, per_image=1e-5, epochs=30, planned=100))
    assert p.next(1.0) is None


def test_screening_tops_up_a_single_architecture_with_tuner_picks():
    p = policy(budget=600, candidates=(CNN,))
    screen = drain(p, 600)
    assert [r.candidate for r in screen] == [CNN, None, None]
    p_no_tuner = policy(budget=600, candidates=(CNN,), tuner=False)
    assert p_no_tuner.next(600).stage == FINAL


def test_the_final_run_takes_the_largest_size_that_trains_ten_epochs_in_the_time_left():
    sizes = {"baseline_cnn": [Sizes("baseline_cnn/width", {32: 1.0, 64: 4.0})]}
    measured = Pace()
    probe = Run(CNN, SCREEN, 1, train_images=IMAGES)
    measured.learn(outcome(probe, "0", 0.6, per_image=0.001, epochs=1))  # 45 s epochs
    short = policy(budget=2000, candidates=(CNN,), tuner=False, sizes=sizes)
    short.pace = measured
    assert short.next(1000).candidate == CNN  # 10 x 180 s at width 64 do not fit in 1,000 s
    long = policy(budget=4000, candidates=(CNN,), tuner=False, sizes=sizes)
    long.pace = measured
    final = long.next(3000)
    assert dict(final.candidate.values) == {"baseline_cnn/width": 64}
    assert any("width=64" in note for note in long.notes)


def test_candidates_are_screened_at_a_small_image_size_and_the_final_is_sized_to_the_budget():
    image = {32: 1 / 16, 64: 0.25, 96: 0.5625, 128: 1.0}  # pixels, against the decoded 128
    sizes = {
        c.architecture: [
            Sizes(f"{c.architecture}/image_size", image, screen=64),
            Sizes(f"{c.architecture}/width", {32: 1.0, 64: 4.0}),
        ]
        for c in (CNN, RESNET)
    }
    p = Policy([CNN, RESNET], train_images=400, epochs=20, budget=600, sizes=sizes, tuner=False)
    screened = drain(p, 600)
    assert [dict(r.candidate.values) for r in screened] == [
        {"baseline_cnn/image_size": 64},
        {"resnet/image_size": 64},
    ]
    p.learn(outcome(screened[0], "0", 0.7, per_image=0.002, epochs=10))
    p.learn(outcome(screened[1], "1", 0.6, per_image=0.008, epochs=10))
    # measured at 64 pixels: at 128 (four times the pixels) an epoch of 400 images is 3.2 s
    full = Candidate("baseline_cnn", "basic", (("baseline_cnn/image_size", 128),))
    assert p.epoch_seconds(full, 400) == pytest.approx(
        4 * p.epoch_seconds(screened[0].candidate, 400)
    )
    # 48 s for 10 epochs: cost 1.5 at most; 128 pixels at width 32 and 64 pixels at
    # width 64 both cost 1, and the image size (listed first) wins the tie
    final = p.next(6 + 10 * 3.2 * 1.5)
    assert final.stage == FINAL
    assert final.candidate == CNN  # the defaults: the decoded 128 pixels, width 32
    assert any("image_size=128, width=32" in note for note in p.notes)


def test_on_small_data_the_final_trains_as_long_as_the_screen_that_chose_it():
    """320 images, all of them screened for 38 epochs: width 64 (4x the time) would
    train 10 epochs in the 100 s left but not 38, so the final stays at width 32."""
    sizes = {"baseline_cnn": [Sizes("baseline_cnn/width", {32: 1.0, 64: 4.0})]}
    p = Policy([CNN, RESNET], train_images=320, epochs=20, budget=300, sizes=sizes, tuner=False)
    screened = drain(p, 300)
    assert [r.train_images for r in screened] == [320, 320]
    p.learn(outcome(screened[0], "0", 0.69, per_image=0.004, epochs=38, fixed=0.0))
    p.learn(outcome(screened[1], "1", 0.60, per_image=0.004, epochs=38, fixed=0.0))
    final = p.next(100)
    assert final.stage == FINAL and final.candidate == CNN
    wider = Policy([CNN, RESNET], train_images=320, epochs=20, budget=300, sizes=sizes)
    wider.pace, wider._stage = p.pace, SECOND
    wider.outcomes = [replace(o, images_seen=10 * 320) for o in p.outcomes]
    assert dict(wider.next(100).candidate.values) == {"baseline_cnn/width": 64}


# --- small data: folds ----------------------------------------------------------------


def fold_rung(
    scores: dict[Candidate, list[float]], pace: float = 1e-5, **kwargs
) -> tuple[Policy, list[Run]]:
    """A one-hour search of data split into 5 folds: the screen of ``scores``' candidates
    (their first score), then the fold rung it plans, each fold run given its score.
    A candidate trains ``pace`` times its cost seconds per image."""
    p = policy(budget=3600, candidates=list(scores), folds=5, **kwargs)
    screen = drain(p, 3600)
    for n, run in enumerate(screen):
        p.learn(
            outcome(run, f"s{n}", scores[run.candidate][0], per_image=run.candidate.cost * pace)
        )
    rung = drain(p, 3300)
    for n, run in enumerate(rung):
        score = scores[run.candidate][run.fold]
        p.learn(
            replace(
                outcome(run, f"f{n}", score, per_image=run.candidate.cost * pace),
                fold_of=run.fold_of,
            )
        )
    return p, rung


def test_on_folds_the_screened_candidates_run_on_every_other_fold_in_the_time_left():
    three = {CNN: [0.6] * 5, RESNET: [0.7] * 5, VIT: [0.5] * 5}
    p, rung = fold_rung(three, pace=1e-7)
    screened = {o.trial_id: o for o in p.outcomes if o.stage == SCREEN}
    # small data: the screens end at their epoch limit in seconds and the final needs
    # little, so every candidate runs on folds 1 to 4, best first, one fold of every
    # candidate after another
    assert {r.stage for r in rung} == {FOLDS}
    assert [(screened[r.fold_of].candidate, r.fold) for r in rung[:3]] == [
        (RESNET, 1),
        (CNN, 1),
        (VIT, 1),
    ]
    assert sorted(r.fold for r in rung) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    # as long and on as many images as the screen: the same measurement on another fold
    screen = next(o for o in p.outcomes if o.stage == SCREEN)
    assert {r.seconds for r in rung} == {p._screen_seconds} and p._screen_seconds > 0
    assert {r.train_images for r in rung} == {screen.images_seen // screen.epochs_trained}
    # slower: the time the final run leaves measures the best two on every fold
    p, rung = fold_rung(three, pace=5e-5)
    assert sorted((r.candidate.architecture, r.fold) for r in rung) == [
        (name, fold) for name in ("baseline_cnn", "resnet") for fold in range(1, 5)
    ]
    # ...on fewer folds, when the final run's need leaves less
    p, rung = fold_rung(three, pace=1e-4)
    assert sorted(r.fold for r in rung) == [1, 1, 2, 2]
    # ...and on none, when the final run needs the time left
    p, rung = fold_rung(three, pace=2e-4)
    assert [r.stage for r in rung] == [FINAL]
    assert "fold rung left out: the final run needs the time left" in p.notes


def test_a_fold_mean_within_the_noise_goes_to_the_cheaper_candidate():
    # resnet screened best (0.74 on fold 0), but over 5 folds it is 0.70 +- 0.04 against
    # baseline_cnn's 0.69 +- 0.04: a tie, and baseline_cnn trains four times faster
    tied = {CNN: [0.66, 0.72, 0.64, 0.74, 0.69], RESNET: [0.74, 0.66, 0.73, 0.67, 0.70]}
    p, _ = fold_rung(tied | {VIT: [0.3] * 5})
    final = p.next(2000)
    assert final.stage == FINAL and final.candidate.architecture == "baseline_cnn"
    # clearly better on the folds: resnet's mean is 0.84
    better = {CNN: tied[CNN], RESNET: [0.84, 0.82, 0.86, 0.83, 0.85], VIT: [0.3] * 5}
    p, _ = fold_rung(better)
    assert p.next(2000).candidate.architecture == "resnet"


def test_without_folds_or_room_for_them_there_is_no_fold_rung():
    p = policy(budget=3600, folds=1)
    screen = drain(p, 3600)
    for n, run in enumerate(screen):
        p.learn(outcome(run, str(n), 0.5 + n / 10, per_image=0.001))
    assert {r.stage for r in drain(p, 2600)} != {FOLDS}
    # 3 screened + 2 x 2 fold runs + the final do not fit in 6 trials
    p = policy(budget=3600, folds=5, max_trials=6)
    assert len(drain(p, 3600)) == 3
    assert any("fold rung left out" in note for note in p.notes)
    # the fold rung is not planned in the screening share: a short budget screens as
    # many candidates as without folds
    p = policy(budget=600, folds=5)
    assert len(drain(p, 600)) == len(drain(policy(budget=600, folds=1), 600)) == 3


def test_the_spread_is_the_fold_to_fold_deviation_and_ties_need_it():
    scores = Scores((0.6, 0.7, 0.8))
    assert scores.summary() == {
        "scores": [0.6, 0.7, 0.8],
        "mean": pytest.approx(0.7),
        "spread": pytest.approx(0.1),
    }
    cheap, dear = ("cheap", Scores((0.70,))), ("dear", Scores((0.71,)))
    by_cost = {"cheap": 1.0, "dear": 2.0}
    # one score each: no noise measured, the better score wins
    ranked = rank_within_noise([dear, cheap], lambda c: c[1], lambda c: by_cost[c[0]])
    assert [name for name, _ in ranked] == ["dear", "cheap"]
    # the same means over folds that vary by 0.1: a tie, the cheaper first
    noisy = ("cheap", Scores((0.6, 0.8, 0.7))), ("dear", Scores((0.61, 0.81, 0.71)))
    ranked = rank_within_noise(list(noisy)[::-1], lambda c: c[1], lambda c: by_cost[c[0]])
    assert [name for name, _ in ranked] == ["cheap", "dear"]


def test_of_the_guided_candidates_the_one_whose_guide_scored_best_is_screened():
    embeddings = [Candidate(f"{name}_embedding", "none", cost=1) for name in "ab"]
    backbones = [Candidate(n, "basic", cost=40, guide=f"{n}_embedding") for n in "ab"]
    p = policy(budget=3600, candidates=[*embeddings, *backbones, CNN])
    scores = {"a_embedding": 0.6, "b_embedding": 0.8, "baseline_cnn": 0.5, "a": 0.7, "b": 0.9}
    screened = []
    while (run := p.next(3600)) is not None and run.stage == SCREEN:
        screened.append(run.candidate.architecture)
        p.learn(outcome(run, str(len(screened)), scores[screened[-1]], per_image=1e-5))
    # one slot for both backbones, right after the embeddings: b's embedding scored best
    assert screened == ["a_embedding", "b_embedding", "b", "baseline_cnn"]
    assert "a: not screened (b_embedding scored better than a_embedding)" in p.notes


def test_each_variant_is_screened_and_the_final_run_keeps_the_chosen_ones_value():
    from automl_core.engine.portfolio import variants

    sides = variants("x_embedding", {"image_size": [96, 224]})
    assert sides == [(("x_embedding/image_size", 96),), (("x_embedding/image_size", 224),)]
    embeddings = [Candidate("x_embedding", "none", values, cost=1) for values in sides]
    p = policy(budget=3600, candidates=[*embeddings, CNN])
    scores = {96: 0.95, 224: 0.80, None: 0.70}  # weights that suit the small side
    screened, count = [], 0
    while (run := p.next(3600)) is not None and run.stage != FINAL:
        side = dict(run.candidate.values).get("x_embedding/image_size")
        screened.append(side)
        count += 1
        p.learn(outcome(run, str(count), scores[side], per_image=1e-6))
    assert screened[:3] == [96, 224, None]
    # the final run does not take the largest side: the side is a choice, not a fidelity
    assert run.stage == FINAL and dict(run.candidate.values) == {"x_embedding/image_size": 96}
    # on a 4-minute budget the variants share one screening slot: baseline_cnn keeps its own
    sides = variants("x_embedding", {"image_size": [96, 160, 224]})
    embeddings = [Candidate("x_embedding", "none", values, cost=1) for values in sides]
    p = policy(budget=240, candidates=[*embeddings, CNN])
    screened = []
    while (run := p.next(240)) is not None and run.stage == SCREEN:
        screened.append(run.candidate.architecture)
        p.learn(outcome(run, str(len(screened)), 0.5, per_image=1e-6))
    assert screened == ["x_embedding"] * 3 + ["baseline_cnn"]
