"""tfds datasets with human labels (config.label_field, noise_type="real")
and tfds splits streamed from disk on the grain path (tfds_source.TfdsImages),
on tfds's mock data."""

import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import errors
from experiments import train
from experiments.data import loading
from experiments.data import protocol
from experiments.data import tfds_source
from experiments.data.dataset import Dataset
from experiments.data.dataset import Split
from tests.experiments.conftest import make_tiny_config
from tests.experiments.conftest import read_metrics
from tests.experiments.conftest import without_times

_STREAMED = dict(
    noise_type="real", noise_rate=0.0, input_pipeline="grain",
    data_source="tfds", model="mlp", mlp_hidden=(16,), batch_size=8,
    eval_batch_size=8, num_epochs=2, method="cdr_ref",
)


def _config(dataset, **overrides):
  return make_tiny_config(dataset=dataset, **{**_STREAMED, **overrides})


def test_streamed_split_reads_what_memory_holds():
  with tfds.testing.mock_data(num_examples=12):
    memory = loading.load_dataset("cifar10_n", source="tfds",
                                  label_field="worse_label")
    streamed = loading.load_dataset("cifar10_n", source="tfds",
                                    label_field="worse_label", stream=True)
  store = streamed.train.images
  assert isinstance(store, tfds_source.TfdsImages)
  assert (store.ndim, store.shape, len(store)) == (1, (12,), 12)
  np.testing.assert_array_equal(streamed.train.labels, memory.train.labels)
  np.testing.assert_array_equal(streamed.train.clean_labels,
                                memory.train.clean_labels)
  np.testing.assert_array_equal(store[3], memory.train.images[3])
  # An index array gives a store of those examples, in that order (the
  # protocol's split), still on disk; it pickles for grain's workers.
  view = pickle.loads(pickle.dumps(store[np.array([7, 2, 5])]))
  assert isinstance(view, tfds_source.TfdsImages)
  np.testing.assert_array_equal(view[1], memory.train.images[2])
  # All at once (instance noise reads the pixels): the in-memory array.
  np.testing.assert_array_equal(np.asarray(store), memory.train.images)


def test_variable_size_images_cannot_become_one_array():
  with tfds.testing.mock_data(num_examples=4):
    food = loading.load_dataset("food101", source="tfds", stream=True)
    sizes = {food.train.images[i].shape for i in range(4)}
    assert len(sizes) > 1  # The mock draws Food-101's sizes at random.
    with pytest.raises(errors.UserError, match="vary in size"):
      np.asarray(food.train.images)


def test_real_noise_keeps_the_labels_as_released():
  labels = np.array([0, 1, 1, 2, 0, 2, 1, 0, 2, 1], np.int32)
  truth = np.array([0, 1, 2, 2, 0, 0, 1, 0, 2, 1], np.int32)
  images = np.zeros((10, 2, 2, 1), np.uint8)
  test = Split(images[:3], truth[:3])
  human = Dataset("cifar10_n", 3, Split(images, labels, truth), test)
  noisy = protocol.make_noisy_dataset(human, "real", 0.0, seed=0,
                                      val_fraction=0.2)
  assert noisy.realized_rate == pytest.approx(0.2)
  assert noisy.corruption_rate == pytest.approx(0.2)
  assert noisy.transition is None
  merged = np.concatenate([noisy.train_labels, noisy.val_labels])
  merged_truth = np.concatenate([noisy.train_clean_labels,
                                 noisy.val_clean_labels])
  assert sorted(zip(merged, merged_truth)) == sorted(zip(labels, truth))
  # Without ground truth (Food-101) nothing is known about the labels.
  released = Dataset("food101", 3, Split(images, labels), test)
  noisy = protocol.make_noisy_dataset(released, "real", 0.0, seed=0)
  assert noisy.realized_rate is None and noisy.corruption_rate == 0.0
  assert (noisy.train_clean_labels == protocol.UNKNOWN_LABEL).all()
  np.testing.assert_array_equal(
      np.sort(np.concatenate([noisy.train_labels, noisy.val_labels])),
      np.sort(labels))
  with pytest.raises(errors.UserError, match="needs noise_rate 0"):
    protocol.make_noisy_dataset(human, "real", 0.2, seed=0)


def test_label_field_errors_name_the_problem():
  with tfds.testing.mock_data(num_examples=2):
    # CIFAR-100N's coarse_label has 20 classes: not a label of the task.
    with pytest.raises(errors.UserError, match=(
        r"cifar100_n has no label field 'coarse_label'; its label fields"
        r" are \['label', 'noise_label'\]")):
      loading.load_configured(_config("cifar100_n", label_field="coarse_label"))
  with pytest.raises(errors.UserError, match="label_field applies to tfds"):
    loading.load_configured(_config("clothing1m", label_field="label"))
  with pytest.raises(errors.UserError, match="apply to source='tfds'"):
    loading.load_configured(_config("mnist", data_source="idx",
                                    data_dir="/", label_field="label"))


def test_cifar10n_run_streams_and_trains_on_the_human_labels(tmp_path):
  config = _config("cifar10_n", label_field="worse_label")
  with tfds.testing.mock_data(num_examples=40):
    exp, _ = train.setup(config)
    assert isinstance(exp.data.train_images, tfds_source.TfdsImages)
    source = tfds.data_source("cifar10_n", split="train", download=False)
    worse = np.array([source[i]["worse_label"] for i in range(40)])
    truth = np.array([source[i]["label"] for i in range(40)])
    streamed = train.train_and_evaluate(config, str(tmp_path / "streamed"))
    # The same run from the split in memory: the same batches, the same run.
    memory = loading.load_dataset("cifar10_n", source="tfds",
                                  label_field="worse_label")
    train.train_and_evaluate(config, str(tmp_path / "memory"), memory)
  records = read_metrics(str(tmp_path / "streamed"))
  assert all(np.isfinite(r["train_loss"]) for r in records)
  assert streamed["realized_noise_rate"] == pytest.approx(
      np.mean(worse != truth))
  assert without_times(records) == without_times(
      read_metrics(str(tmp_path / "memory")))


def test_food101_run_streams_variable_size_images(tmp_path):
  config = _config("food101", image_size=8, num_epochs=1)
  with tfds.testing.mock_data(num_examples=24):
    summary = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(read_metrics(str(tmp_path))[0]["train_loss"])
  # Released labels only: no ground truth, no memorization measure.
  assert summary["realized_noise_rate"] is None
  assert summary["last_memorization"] is None


@pytest.mark.slow
def test_streamed_run_with_workers_equals_in_process(tmp_path):
  with tfds.testing.mock_data(num_examples=40):
    for workers in (0, 2):
      train.train_and_evaluate(
          _config("cifar100_n", label_field="noise_label",
                  num_workers=workers, num_epochs=1),
          str(tmp_path / str(workers)))
  assert without_times(read_metrics(str(tmp_path / "0"))) == without_times(
      read_metrics(str(tmp_path / "2")))
