"""Tests for the transition-matrix and noise-rate estimators."""

import numpy as np
import pytest

from experiments.data import noise
from experiments.methods import estimation

C = 4


def _transition():
  """A diagonally dominant, asymmetric row-stochastic T."""
  return np.array([
      [0.7, 0.2, 0.1, 0.0],
      [0.0, 0.8, 0.2, 0.0],
      [0.1, 0.0, 0.6, 0.3],
      [0.0, 0.05, 0.05, 0.9],
  ])


def _noisy_posteriors(clean_posteriors, transition):
  """p(noisy | x) = p(clean | x) @ T: the model a perfect learner would fit."""
  return clean_posteriors @ transition


def test_anchor_points_of_a_perfect_posterior_give_t_exactly():
  rng = np.random.default_rng(0)
  transition = _transition()
  # Mixtures of classes, plus one sure example (an anchor) per class.
  clean = np.concatenate([rng.dirichlet(np.ones(C), 300), np.eye(C)])
  clean = clean[rng.permutation(len(clean))]
  probs = _noisy_posteriors(clean, transition)
  estimated = estimation.anchor_transition(probs, filter_outlier=False)
  np.testing.assert_allclose(estimated, transition, atol=1e-12)


def test_filtered_anchor_is_the_highest_below_the_97th_percentile():
  rng = np.random.default_rng(1)
  probs = rng.dirichlet(np.ones(C), 100)  # Distinct values in each column.
  before = probs.copy()
  estimated = estimation.anchor_transition(probs, percentile=97.0)
  # numpy's "higher" 97th percentile of 100 values is the 98th smallest
  # (index ceil(0.97 * 99) = 97): the filter drops the 3 largest, so the
  # anchor of class i is the example with the 4th-largest p(i).
  anchors = [np.argsort(probs[:, i])[-4] for i in range(C)]
  expected = probs[anchors] / probs[anchors].sum(axis=1, keepdims=True)
  np.testing.assert_allclose(estimated, expected)
  np.testing.assert_array_equal(probs, before)  # The input is not modified.


def test_filtered_anchors_of_nearly_sure_examples_are_close_to_t():
  rng = np.random.default_rng(2)
  transition = _transition()
  labels = rng.integers(0, C, 2000)
  # Every example is mostly its class, by a purity spread over [0.9, 1].
  purity = rng.uniform(0.9, 1.0, len(labels))[:, None]
  clean = purity * np.eye(C)[labels] + (1 - purity) / C
  estimated = estimation.anchor_transition(
      _noisy_posteriors(clean, transition), filter_outlier=True
  )
  np.testing.assert_allclose(estimated, transition, atol=0.01)
  np.testing.assert_allclose(estimated.sum(axis=1), 1.0)


def test_noise_rate_is_one_minus_the_prior_weighted_diagonal():
  symmetric = noise.transition_matrix("symmetric", 0.3, C)
  prior = np.array([0.1, 0.2, 0.3, 0.4])
  assert estimation.noise_rate(symmetric, prior) == pytest.approx(0.3)
  # 1 - (0.1 * 0.7 + 0.2 * 0.8 + 0.3 * 0.6 + 0.4 * 0.9) = 0.23.
  assert estimation.noise_rate(_transition(), prior) == pytest.approx(0.23)
  np.testing.assert_allclose(
      estimation.class_prior(np.array([0, 0, 1, 3]), C), [0.5, 0.25, 0, 0.25]
  )


def _sampled_noise(rng, transition, n):
  clean = rng.integers(0, C, n)
  cdf = np.cumsum(transition[clean], axis=1)
  noisy = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), C - 1)
  return clean, noisy


def test_confident_learning_finds_the_realized_noise():
  rng = np.random.default_rng(3)
  transition = noise.transition_matrix("pairflip", 0.3, C)
  clean, noisy = _sampled_noise(rng, transition, 4000)
  # A perfect model of p(noisy | x) counts each example into its clean class.
  cl_transition, cl_rate = estimation.confident_learning(
      noisy, transition[clean]
  )
  assert cl_rate == pytest.approx(np.mean(noisy != clean), abs=1e-9)
  empirical = np.array([
      np.bincount(noisy[clean == i], minlength=C) / np.sum(clean == i)
      for i in range(C)
  ])
  np.testing.assert_allclose(cl_transition, empirical, atol=1e-9)


def test_estimate_from_logits_and_its_report():
  rng = np.random.default_rng(4)
  transition = _transition()
  clean_labels, noisy = _sampled_noise(rng, transition, 1000)
  clean = np.concatenate([np.eye(C)[clean_labels], np.eye(C)])
  logits = np.log(_noisy_posteriors(clean, transition) + 1e-12) + 3.0
  labels = np.concatenate([noisy, np.arange(C)])
  found = estimation.estimate(logits, labels, filter_outlier=False)
  assert found.transition.dtype == np.float32 and found.transition.shape == (C, C)
  np.testing.assert_allclose(found.transition, transition, atol=1e-6)
  prior = np.bincount(labels, minlength=C) / len(labels)
  assert float(found.noise_rate) == pytest.approx(
      1 - np.sum(prior * np.diag(transition)), abs=1e-6
  )
  report = estimation.report(found, true=np.eye(C))
  assert report["noise_rate_hat"] == pytest.approx(float(found.noise_rate))
  assert report["max_abs_error"] == pytest.approx(0.4, abs=1e-6)  # 1 - T_22.
  assert report["relative_error"] == pytest.approx(
      np.abs(transition - np.eye(C)).sum() / C, abs=1e-5
  )
  assert set(estimation.report(found, true=None)) == {
      "transition", "noise_rate_hat", "cl_transition", "cl_noise_rate_hat"
  }
