"""How batches reach the compiled step: the device path and the grain path.

`config.input_pipeline` picks one, once, in setup; the loop (train.py) only
sees a `Feed`:

* `make_train_fn(plan, num_steps)`: the compiled function of one call;
* `epoch_calls(plan, epoch, start, iterator_state)`: the calls of an epoch
  from its step `start`, each as (num_steps, the call's data arguments);
  `.input_wait_s` is the time the loop waited for data and `.state()` the
  data iterator's state (grain) for a mid-epoch checkpoint;
* `predict(name, method_state)`: the logits of every example of a split.

Device path: the uint8 training split lives on the devices and the step
gathers its batch from the epoch's permutation (no host work per step).
Grain path (experiments/data/input_pipeline.py): the host streams batches
of the same permutation, decoded and augmented by grain workers; they cross
as uint8, sharded over the mesh with `jax.make_array_from_process_local_data`.
With augmentation off both paths feed the step the same batches.
"""

import threading
import time
from typing import Any, Callable, Iterator

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from experiments import distributed
from experiments import evaluation
from experiments import methods
from experiments import phases
from experiments import steps
from experiments.data import augment
from experiments.data import DatasetSpec
from experiments.data import input_pipeline
from experiments.data import NoisyDataset

SPLITS = ("train", "val", "test")


class DeviceFeed:
  """The whole training split on the devices; batches gathered in the step."""

  def __init__(self, config: ml_collections.ConfigDict, data: NoisyDataset,
               spec: DatasetSpec, mesh: jax.sharding.Mesh,
               method: methods.Method):
    self._config, self._spec, self._mesh = config, spec, mesh
    self.arrays = distributed.replicate(
        steps.TrainArrays(data.train_images, data.train_labels,
                          data.train_labels == data.train_clean_labels),
        mesh,
    )
    batch = config.eval_batch_size
    self._splits = {
        name: evaluation.to_device(getattr(data, f"{name}_images"),
                                   getattr(data, f"{name}_labels"), batch, mesh)
        for name in SPLITS
    }
    self._predict_fn = evaluation.make_predict_fn(method, spec, batch, mesh)
    self.splits = SPLITS

  def close(self) -> None:
    """Nothing to stop (the grain path's workers)."""

  def make_train_fn(self, plan: phases.PhasePlan, num_steps: int) -> Callable:
    return steps.make_train_fn(
        plan.phase.train_step, self._spec, self._config, self._mesh,
        plan.steps_per_epoch, num_steps, plan.batch_size, plan.first_step,
        plan.first_epoch - 1,
    )

  def epoch_calls(self, plan, epoch, start=0, iterator_state=None):
    del iterator_state  # Epoch-end checkpoints only.
    perm = distributed.replicate(
        np.asarray(steps.epoch_permutation(self._config.seed, epoch,
                                           len(self.arrays.labels))),
        self._mesh,
    )
    return _Calls(((n, (self.arrays, perm)) for n in
                   phases.calls_from(plan, start, self._config.steps_per_call)),
                  state=lambda: None)

  def predict(self, name: str, method_state) -> np.ndarray:
    return evaluation.predict_split(self._predict_fn, method_state,
                                    self._splits[name],
                                    self._config.eval_batch_size)


class GrainFeed:
  """Batches streamed by grain from host memory or disk."""

  def __init__(self, config: ml_collections.ConfigDict, data: NoisyDataset,
               spec: DatasetSpec, mesh: jax.sharding.Mesh,
               method: methods.Method):
    self._config, self._spec, self._mesh = config, spec, mesh
    clean = data.train_clean_labels
    self._stores = {
        "train": input_pipeline.SplitStore(
            data.train_images, np.asarray(data.train_labels, np.int32),
            np.where(clean == -1, -1, data.train_labels == clean).astype(np.int8),
        ),
        **{name: _eval_store(images, labels) for name, (images, labels) in
           [("val", (data.val_images, data.val_labels)),
            ("test", (data.test_images, data.test_labels)),
            *data.extra_tests.items()]},
    }
    self.splits = tuple(self._stores)
    self._train_prep = input_pipeline.preprocessing(
        spec, config.seed, train=True, image_size=config.image_size)
    self._eval_prep = input_pipeline.preprocessing(
        spec, config.seed, train=False, image_size=config.image_size)
    self._sharding = NamedSharding(mesh, P(None, "data"))
    self._predict_fn = jax.jit(
        lambda state, images: method.predict(
            state, augment.normalize(images, spec)),
        in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))),
        **distributed.gathered_outputs(mesh),
    )
    self.skipped_images = 0
    # (phase, epoch) -> that epoch's iterator, its workers already started.
    self._started = {}

  def make_train_fn(self, plan: phases.PhasePlan, num_steps: int) -> Callable:
    return steps.make_fed_train_fn(
        plan.phase.train_step, self._spec, self._mesh, plan.steps_per_epoch,
        num_steps, plan.first_step, plan.first_epoch - 1,
    )

  def epoch_calls(self, plan, epoch, start=0, iterator_state=None):
    if start and iterator_state is None:
      raise ValueError("a mid-epoch start needs the iterator's state.")
    started, self._started = self._started, {}
    ahead = started.pop((plan.phase.name, epoch), None) if not start else None
    for unused in started.values():
      unused.close()
    if ahead is None:
      ahead = _Started(input_pipeline.iterate(
          self._epoch_batches(plan, epoch), iterator_state), fetch=False)
    if self._config.num_workers and epoch < plan.last_epoch:
      # The next epoch's workers start now: their start-up (a process that
      # imports grain and jax, seconds on a busy host) overlaps this epoch
      # instead of stalling the next one (benchmarks/input_pipeline.py).
      self._started[(plan.phase.name, epoch + 1)] = _Started(
          input_pipeline.iterate(self._epoch_batches(plan, epoch + 1)))
    counts = phases.calls_from(plan, start, self._config.steps_per_call)
    return _Calls(self._stacked(ahead.batches(), counts),
                  state=ahead.iterator.get_state)

  def close(self) -> None:
    """Stops the workers started ahead for an epoch that will not run."""
    for started in self._started.values():
      started.close()
    self._started = {}

  def _epoch_batches(self, plan, epoch):
    store = self._stores["train"]
    order = np.asarray(steps.epoch_permutation(
        self._config.seed, epoch, len(store.labels)))
    return input_pipeline.batches(
        store, order[:plan.steps_per_epoch * plan.batch_size],
        plan.batch_size, self._train_prep, epoch=epoch,
        num_workers=self._config.num_workers,
        skip_corrupt=self._config.skip_corrupt_images,
    )

  def _stacked(self, iterator, counts) -> Iterator[tuple[int, tuple]]:
    for num_steps in counts:
      chunk = [next(iterator) for _ in range(num_steps)]
      self.skipped_images += int(sum(b["skipped"].sum() for b in chunk))
      yield num_steps, (self._global(steps.FedBatch(*(
          np.stack([b[field] for b in chunk])
          for field in steps.FedBatch._fields
      ))),)

  def _global(self, local: steps.FedBatch) -> steps.FedBatch:
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self._sharding, x),
        local,
    )

  def predict(self, name: str, method_state) -> np.ndarray:
    store = self._stores[name]
    batch = self._config.eval_batch_size
    dataset = input_pipeline.batches(
        store, input_pipeline.padded_order(len(store.labels), batch), batch,
        self._eval_prep, num_workers=self._config.num_workers,
        skip_corrupt=self._config.skip_corrupt_images,
    )
    sharding = NamedSharding(self._mesh, P("data"))
    logits = [
        distributed.in_order(self._predict_fn(
            method_state,
            jax.make_array_from_process_local_data(sharding, b["images"])))
        for b in dataset
    ]
    return np.concatenate(
        [np.asarray(jax.device_get(x)) for x in logits])[:len(store.labels)]


def _eval_store(images, labels) -> input_pipeline.SplitStore:
  return input_pipeline.SplitStore(images, np.asarray(labels, np.int32),
                                   np.ones(len(labels), np.int8))


class _Started:
  """An epoch's grain iterator, its first batch fetched by a thread: grain
  starts an epoch's worker processes at the first `next`."""

  def __init__(self, iterator, fetch: bool = True):
    self.iterator, self._first, self._error = iterator, [], None
    self._thread = threading.Thread(target=self._fetch, daemon=True)
    if fetch:
      self._thread.start()

  def _fetch(self):
    try:
      self._first.append(next(self.iterator))
    except BaseException as e:  # pylint: disable=broad-except
      self._error = e  # Raised where the batch is used.

  def _join(self):
    if self._thread.ident is not None:
      self._thread.join()

  def close(self):
    self._join()
    self.iterator.close()

  def batches(self) -> Iterator[dict[str, np.ndarray]]:
    self._join()
    if self._error is not None:
      raise self._error
    yield from self._first
    yield from self.iterator


class _Calls:
  """An epoch's calls, timing how long the loop waits for each call's data."""

  def __init__(self, calls: Iterator, state: Callable[[], Any]):
    self._calls, self.state, self.input_wait_s = calls, state, 0.0

  def __iter__(self):
    return self

  def __next__(self):
    start = time.perf_counter()
    try:
      return next(self._calls)
    finally:
      self.input_wait_s += time.perf_counter() - start


def make_feed(config, data, spec, mesh, method):
  """The input path `config.input_pipeline` names."""
  feed = {"device": DeviceFeed, "grain": GrainFeed}[config.input_pipeline]
  return feed(config, data, spec, mesh, method)


def image_shape(config, data: NoisyDataset, spec: DatasetSpec) -> tuple[int, ...]:
  """(h, w, c) of the images the step sees."""
  images = data.train_images
  if images.ndim == 4:
    return tuple(images.shape[1:])
  prep = input_pipeline.preprocessing(spec, config.seed, train=True,
                                      image_size=config.image_size)
  return (prep.size, prep.size, 3)
