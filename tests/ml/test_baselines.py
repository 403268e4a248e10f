"""Pitch, timing and velocity baselines, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.evaluation.baselines import (
    ClassFrequencies,
    ConstantBaseline,
    MarkovPitch,
    UniformPitch,
    UnigramPitch,
    cross_entropy,
    fit_pitch_baseline,
    tune_alpha,
)

TOY = np.array([60, 62, 60, 62])


def test_uniform_costs_log_128_nats_per_note() -> None:
    assert cross_entropy(UniformPitch(), [np.array([0, 64, 127])]) == pytest.approx(math.log(128))


def test_unigram_is_add_alpha_smoothed_frequency() -> None:
    model = UnigramPitch(alpha=0.5).fit([TOY])
    # 60 was seen twice in four notes; 64 never: (c + alpha) / (N + 128 alpha).
    log_probs = model.score([np.array([60, 64])])[0]
    assert log_probs == pytest.approx([math.log(2.5 / 68), math.log(0.5 / 68)])


def test_add_alpha_markov_1_scores_from_the_first_note() -> None:
    model = MarkovPitch(1, alpha=1.0, smoothing="add-alpha").fit([TOY])
    probs = np.exp(model.score([TOY])[0])
    # Note 1 has no context: the unigram (2+1)/(4+128). Then 62|60 = (2+1)/(2+128),
    # 60|62 = (1+1)/(1+128) (62 is followed once, by 60), 62|60 again.
    assert probs == pytest.approx([3 / 132, 3 / 130, 2 / 129, 3 / 130])


def test_witten_bell_markov_1_interpolates_with_the_unigram() -> None:
    model = MarkovPitch(1, alpha=1.0).fit([TOY])
    unigram_62, unigram_64 = 3 / 132, 1 / 132
    # Context 60: seen twice, followed by one distinct pitch (62): (c + T * P_lower) / (c(h) + T).
    assert math.exp(model.log_prob_next([60])[62]) == pytest.approx((2 + unigram_62) / 3)
    assert math.exp(model.log_prob_next([60])[64]) == pytest.approx(unigram_64 / 3)


def test_unseen_context_backs_off_to_lower_orders() -> None:
    model = MarkovPitch(2, alpha=1.0).fit([TOY])
    unigram = UnigramPitch(alpha=1.0).fit([TOY])
    # (10, 11) and 11 were never seen: the order-2 model falls back to the unigram.
    assert model.log_prob_next([10, 11]) == pytest.approx(unigram.log_prob_next([]))


@pytest.mark.parametrize("model", [UniformPitch(), UnigramPitch(0.1), MarkovPitch(1), MarkovPitch(3),
                                   MarkovPitch(2, smoothing="add-alpha")], ids=lambda m: m.name)
def test_next_pitch_distributions_sum_to_one(model: object) -> None:
    model.fit([TOY, np.array([60, 64, 67, 72, 67, 64, 60])])  # type: ignore[attr-defined]
    for context in ([], [60], [60, 64], [64, 67, 72], [1, 2, 3, 4]):
        assert np.exp(model.log_prob_next(context)).sum() == pytest.approx(1.0)  # type: ignore[attr-defined]


def test_higher_order_markov_is_more_certain_of_a_repeated_tune() -> None:
    tune = np.array([60, 62, 64, 60, 60, 62, 64, 60, 64, 65, 67, 64, 65, 67] * 3)
    ce = [cross_entropy(MarkovPitch(k).fit([tune]), [tune]) for k in (1, 2, 3)]
    assert ce[0] > ce[1] > ce[2]


def test_score_and_predict_agree_with_score() -> None:
    model = MarkovPitch(2).fit([TOY])
    log_probs, best = model.score_and_predict([TOY, np.array([62, 60])])
    assert log_probs == pytest.approx(np.concatenate(model.score([TOY, np.array([62, 60])])))
    assert best[1] == 62  # after 60 comes 62


def test_sampling_a_deterministic_chain_follows_it() -> None:
    model = MarkovPitch(1, alpha=1e-6).fit([np.array([60, 62] * 50)])
    sample = model.sample(np.random.default_rng(0), 10, primer=[60])
    assert sample.tolist() == [62, 60] * 5


def test_sample_batch_shape_and_range() -> None:
    model = MarkovPitch(3).fit([TOY])
    sample = model.sample_batch(np.random.default_rng(1), 7, 5)
    assert sample.shape == (5, 7)
    assert sample.min() >= 0 and sample.max() <= 127


def test_alpha_is_tuned_on_validation_pieces() -> None:
    train = [np.array([60, 62, 64, 65, 67] * 4)]
    model = UnigramPitch(alpha=1.0).fit(train)
    # Validation uses only training pitches: the smallest alpha wastes the least mass.
    assert tune_alpha(model, [np.array([60, 64, 67])], grid=(0.01, 1.0)) == 0.01
    fitted = fit_pitch_baseline("markov-2", train, [np.array([60, 62, 64])])
    assert fitted.alpha in (0.01, 0.03, 0.1, 0.3, 1.0)  # type: ignore[attr-defined]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        MarkovPitch(0)
    with pytest.raises(ValueError):
        MarkovPitch(2, smoothing="kneser-ney")
    with pytest.raises(ValueError):
        UnigramPitch(alpha=0)


def test_constant_baselines_predict_training_mean_and_median() -> None:
    values = np.array([0.5, 0.5, 1.0, 4.0])
    assert ConstantBaseline("mean").fit(values).predict(3) == pytest.approx([1.5] * 3)
    assert ConstantBaseline("median").fit(values).predict(2) == pytest.approx([0.75] * 2)
    with pytest.raises(ValueError):
        ConstantBaseline("mode").fit(values)


def test_class_frequencies_are_add_alpha_smoothed() -> None:
    freqs = ClassFrequencies(classes=3, alpha=1.0).fit(np.array([0, 0, 1]))
    assert np.exp(freqs.log_prob(np.array([0, 1, 2]))) == pytest.approx([3 / 6, 2 / 6, 1 / 6])
