"""The grain input path: a split streamed from host memory or disk.

A split is a random-access store of examples - uint8 images in host memory
(F-MNIST, CIFAR), image file paths (the folder datasets) or a tfds split
read on access (`tfds_source.TfdsImages`: Food-101, CIFAR-N) - with their
labels. Each epoch is a `grain.MapDataset` over the epoch's order (the same
seeded permutation as the device path, `steps.epoch_permutation`), mapped
through the dataset's preprocessing (decode, then random-resized-crop +
flip, CIFAR's pad-4 crop + flip, or nothing) and batched; with
`num_workers > 0` grain runs the map in worker processes
(`IterDataset.mp_prefetch`), which also prefetches. uint8 batches leave
here; normalization happens on the device.

Determinism: an example's augmentation draws from a numpy generator seeded
with (seed, epoch, dataset index), so a batch does not depend on the worker
count or on where a resumed run restarts; an epoch's iterator state (grain's
`get_state`) is checkpointed by the loop and restored with `set_state`.

Multi-process runs: each process produces only its rows of every global
batch (process p of P takes rows [p B / P, (p + 1) B / P)), so the global
batch is the same whatever the process count.
"""

from typing import Any, Iterator, NamedTuple

from absl import flags
import grain
import jax
import numpy as np

from experiments import errors
from experiments.data import image_ops
from experiments.data.specs import DatasetSpec

_AUGMENT_STREAM = 3
_MIN_SHM_SIZE = 1 << 16


class SplitStore(NamedTuple):
  """One split's examples as the grain path reads them.

  Attributes:
    images: uint8 ``(n, h, w, c)`` images, ``(n,)`` file paths, or a
      ``tfds_source.TfdsImages`` store (an image per index).
    labels: int32 ``(n,)`` labels (noisy for training and validation).
    is_clean: bool ``(n,)``: whether each label is the verified one (only
      for the label precision of a method's selection; never trained on).
  """

  images: np.ndarray
  labels: np.ndarray
  is_clean: np.ndarray


class Preprocessing(NamedTuple):
  """How examples become fixed-size uint8 images (picklable for workers).

  Attributes:
    policy: "none", "crop_flip" (CIFAR's pad-4 crop + flip) or
      "random_resized_crop" (+ flip; the ImageNet-style datasets).
    train: train augmentation (True) or eval preprocessing (False).
    size: output side of file images (train crop or eval crop).
    resize: eval: the shorter side before the center crop.
    seed: the run's seed (augmentation randomness).
  """

  policy: str
  train: bool
  size: int | None
  resize: int | None
  seed: int

  def __call__(self, image, index: int, epoch: int) -> np.ndarray:
    is_path = isinstance(image, (str, np.str_))
    # Files, and decoded images of another size than the input (tfds
    # Food-101's vary), are sized here; in-memory arrays come at size.
    if is_path or (self.size is not None
                   and image.shape[:2] != (self.size, self.size)):
      if not self.train or self.policy != "random_resized_crop":
        # Evaluation, and training without augmentation: the eval resize
        # + center crop (decoded at no less than the resize).
        if is_path:
          image = image_ops.decode(str(image), min_side=self.resize)
        image = image_ops.resize_center_crop(image, self.resize, self.size)
        if not self.train or self.policy == "none":
          return image
      elif is_path:
        # Full resolution: a small random crop keeps its detail, as
        # torchvision's RandomResizedCrop on the decoded image does.
        image = image_ops.decode(str(image))
    if not self.train or self.policy == "none":
      return image
    rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, epoch, index])
    if self.policy == "crop_flip":
      return image_ops.pad_crop_flip(rng, image)
    image = image_ops.random_resized_crop(rng, image, self.size)
    return image_ops.random_flip(rng, image)


def preprocessing(
    spec: DatasetSpec, seed: int, train: bool, image_size: int | None = None
) -> Preprocessing:
  """The dataset's preprocessing, at `image_size` if given (eval resize
  scaled in the dataset's ratio, e.g. 224 / 256)."""
  size = spec.eval_size if not train else spec.train_size
  resize = spec.eval_resize
  if image_size is not None:
    if resize is not None and spec.eval_size:
      resize = round(image_size * resize / spec.eval_size)
    size = image_size
  return Preprocessing(spec.policy, train, size, resize, seed)


class _Examples:
  """position -> example of one epoch's order (runs in grain workers).

  A corrupt image stops the run naming its file; with `skip_corrupt` it is
  replaced by the next decodable example of the order and counted.
  """

  def __init__(self, store: SplitStore, order: np.ndarray,
               prep: Preprocessing, epoch: int, skip_corrupt: bool):
    self._store, self._order, self._prep = store, order, prep
    self._epoch, self._skip_corrupt = epoch, skip_corrupt

  def __call__(self, position) -> dict[str, Any]:
    skipped = 0
    for attempt in range(len(self._order)):
      index = int(self._order[(int(position) + attempt) % len(self._order)])
      if index < 0:  # Evaluation padding.
        return self._padding()
      try:
        image = self._prep(self._store.images[index], index, self._epoch)
        break
      except image_ops.CorruptImage as e:
        if not self._skip_corrupt:
          raise errors.UserError(
              f"corrupt image {e.path} (set config.skip_corrupt_images=True"
              " to skip such files)."
          ) from None
        skipped += 1
    else:
      raise errors.UserError("every image of the split is corrupt.")
    return {
        "images": image,
        "labels": self._store.labels[index].astype(np.int32),
        "indices": np.int32(index),
        "is_clean": np.bool_(self._store.is_clean[index]),
        "skipped": np.int32(skipped),
    }

  def _padding(self) -> dict[str, Any]:
    example = self(0)
    return {**example, "images": np.zeros_like(example["images"]),
            "labels": np.int32(-1), "indices": np.int32(-1),
            "is_clean": np.False_, "skipped": np.int32(0)}


class _Batch:
  """A row of positions -> the stacked batch (runs in grain workers).

  One grain element per batch rather than per example: grain's per-element
  overhead (map, batch, and a worker's hand-over to the training process)
  is paid once per batch (experiments/benchmarks/input_pipeline.py).
  """

  def __init__(self, examples: _Examples):
    self._examples = examples

  def __call__(self, positions: np.ndarray) -> dict[str, np.ndarray]:
    examples = [self._examples(p) for p in positions]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def _local_positions(num_positions: int, batch_size: int) -> np.ndarray:
  """Positions of this process's rows of every global batch, (batches, rows)."""
  count = jax.process_count()
  if batch_size % count:
    raise errors.UserError(
        f"batch size {batch_size} is not divisible by {count} processes."
    )
  local = batch_size // count
  rows = np.arange(num_positions).reshape(-1, batch_size)
  return rows[:, jax.process_index() * local:(jax.process_index() + 1) * local]


def _ensure_flags() -> None:
  # grain reads absl flags; a library caller (tests, notebooks) may not have
  # parsed any.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def batches(
    store: SplitStore,
    order: np.ndarray,
    batch_size: int,
    prep: Preprocessing,
    *,
    epoch: int = 0,
    num_workers: int = 0,
    skip_corrupt: bool = False,
) -> grain.IterDataset:
  """The batches of `order` (a multiple of `batch_size` long), as grain yields
  them: dicts of numpy arrays with this process's rows."""
  _ensure_flags()
  rows = _local_positions(len(order), batch_size)
  dataset = (
      grain.MapDataset.source(rows)
      .map(_Batch(_Examples(store, np.asarray(order), prep, epoch,
                            skip_corrupt)))
      .to_iter_dataset()
  )
  if num_workers:
    # Small arrays (labels, indices; 28 x 28 images) cross from the workers
    # pickled: a shared-memory block per array costs more than the copy
    # (grain's DatasetOptions.min_shm_size).
    dataset = grain.experimental.WithOptionsIterDataset(
        dataset, grain.experimental.DatasetOptions(min_shm_size=_MIN_SHM_SIZE)
    ).mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return dataset


def padded_order(num_examples: int, batch_size: int) -> np.ndarray:
  """0..n-1 then -1 (padding) up to a multiple of `batch_size`."""
  pad = -num_examples % batch_size
  return np.concatenate([np.arange(num_examples), np.full(pad, -1)])


def iterate(dataset: grain.IterDataset, state: dict | None = None) -> Iterator:
  """An iterator over `dataset`, restored to `state` (grain's get_state)."""
  iterator = iter(dataset)
  if state is not None:
    iterator.set_state(state)
  return iterator
