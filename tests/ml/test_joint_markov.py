from __future__ import annotations

import math

import numpy as np
import pytest

from ml.evaluation.joint_markov import START, ChainSteps, JointMarkov

TIME_CLASSES = 3


def _chain() -> JointMarkov:
    # Two tunes: C-E-G on steps 1 and 2, and the same rhythm a tone higher.
    pieces = []
    for shift in (0, 2):
        pitch = np.array([60, 64, 67, 64, 60]) + shift
        step = np.array([0, 1, 2, 1, 1])
        duration = np.array([1, 1, 2, 1, 2])
        position = np.array([0, 12, 36, 0, 12])
        pieces.append((step, pitch, duration, position))
    return JointMarkov(TIME_CLASSES).fit(pieces)


def test_the_joint_distribution_sums_to_one_in_a_seen_and_an_unseen_context() -> None:
    chain = _chain()
    first = chain.token(0, 60, 1)
    for context in ((0, first, START), (24, chain.token(2, 90, 2), first), (-1, START, START)):
        total = sum(chain.step_pitch_prob(*context, step, pitch)
                    for step in range(TIME_CLASSES) for pitch in range(128))
        assert total == pytest.approx(1.0, abs=1e-9)
        assert np.exp(chain.step_log_probs(*context)).sum() == pytest.approx(1.0, abs=1e-9)


def test_the_chain_learns_what_follows_a_context_and_factorises_it_consistently() -> None:
    chain = _chain()
    context = (0, chain.token(0, 60, 1), START)  # after the first C
    # E on step 1 followed the C in training: it is the likeliest next (step, pitch).
    best = max(((s, p) for s in range(TIME_CLASSES) for p in range(128)),
               key=lambda sp: chain.step_pitch_prob(*context, *sp))
    assert best == (1, 64)
    step_lp = chain.step_log_probs(*context)
    pitch_lp, duration_lp = chain.given_step(*context, 1)
    # p(step) p(pitch | step) is the joint probability.
    assert math.exp(step_lp[1] + pitch_lp[64] - np.logaddexp.reduce(pitch_lp)) == pytest.approx(
        chain.step_pitch_prob(*context, 1, 64), rel=1e-6)
    assert int(np.argmax(duration_lp)) == 1


def test_chain_steps_answer_like_the_networks_compiled_steps() -> None:
    chain = _chain()
    steps = ChainSteps(chain, batch=2)
    w = 4
    window = {"pitch": np.full((2, w), 128), "step": np.full((2, w), TIME_CLASSES),
              "duration": np.full((2, w), TIME_CLASSES), "velocity": np.zeros((2, w), np.float32),
              "position": np.full((2, w), 96), "cadence": np.full((2, w), 17)}
    steps.reset(window, {"style": 0, "metre": 0, "mode": np.zeros(2)})
    step_logits = steps.encode(None)
    assert step_logits.shape == (2, TIME_CLASSES)
    pitch, duration, velocity = steps.decode(np.zeros(2, np.int32), np.zeros(2, np.int32), np.zeros(2, np.int32))
    assert pitch.shape == (2, 128) and duration.shape == (2, TIME_CLASSES) and velocity.shape == (2, 1)
    assert int(np.argmax(pitch[0])) in (60, 62)  # pieces open on C or D
    note = {"pitch": np.array([60, 62]), "step": np.zeros(2, np.int64), "duration": np.ones(2, np.int64),
            "velocity": np.zeros(2), "position": np.zeros(2, np.int64), "cadence": np.zeros(2, np.int64)}
    steps.encode(note)
    assert steps.window["pitch"][0, -1] == 60 and steps.window["pitch"][1, -1] == 62
