"""Images per second one input worker can decode and augment, per decoder.

Writes Clothing1M-like JPEGs (500 x 375 and 375 x 500, quality 90, made with
Pillow from smooth random fields plus grain, so that they compress to the
size of web photographs rather than of noise or of flat colour), then times
per CPU-second of one process the training transform of the ImageNet-style
datasets (decode, random-resized-crop to 224, horizontal flip;
`experiments/data/image_ops.py`) with each candidate decoder:

* `pillow`: ``Image.open(path).convert("RGB")``, torchvision's loader;
* `pillow_draft`: the same with ``draft`` at the output size (Pillow's
  DCT-domain reduction; a 375-pixel side cannot halve above 224, so for
  these images it shows what asking costs);
* `opencv`: ``cv2.imread`` + BGR -> RGB, one OpenCV thread (measured where
  opencv-python-headless is installed; the pipeline does not need it);
* `simplejpeg`: ``image_ops.decode``, libjpeg-turbo through simplejpeg,
  Pillow for what it rejects - the decoder the pipeline uses;
* `simplejpeg_any_scale` (decode only): libjpeg-turbo left to pick any
  scale factor that keeps both sides >= 224 (5/8 here), which
  ``image_ops.decode`` avoids.

then the evaluation transform (decode, resize 256, center crop 224) and the
decode alone. All run in interleaved rounds so that a busy machine slows
them alike; each table gives the median images/s over rounds, the median
over rounds of the rate over the first row's in the same round, and how many
such workers feed a GPU at a given training rate.

  python -m experiments.benchmarks.decode
  python -m experiments.benchmarks.decode --num_images=100 --rounds=3
"""

import importlib.util
import math
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from experiments import atomic
from experiments.data import image_ops

_NUM_IMAGES = flags.DEFINE_integer("num_images", 200, "JPEGs to write.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved rounds.")
_SIZE = flags.DEFINE_integer("size", 224, "Training crop side.")
_GPU_RATE = flags.DEFINE_float(
    "gpu_rate", 3000.0, "Images/s a ResNet-50 trains at on one GPU."
)
_TARGET = flags.DEFINE_float("target", 300.0, "Wanted images/s per worker.")
_OUTPUT = flags.DEFINE_string(
    "output",
    "experiments/results/benchmark_decode.md",
    "Where to write the Markdown table.",
)

_HAS_OPENCV = importlib.util.find_spec("cv2") is not None
_SHAPES = ((375, 500), (500, 375))  # Clothing1M's usual sizes, both ways.


def write_jpegs(directory: str, count: int, seed: int = 0) -> list[str]:
  """Writes ``count`` photograph-like quality-90 JPEGs; returns their paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(count):
    height, width = _SHAPES[i % len(_SHAPES)]
    coarse = rng.integers(0, 256, (height // 32, width // 32, 3), np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse).resize(
            (width, height), Image.Resampling.BICUBIC
        )
    )
    grain = rng.integers(-8, 9, smooth.shape)
    pixels = np.clip(smooth.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    path = os.path.join(directory, f"{i:05d}.jpg")
    Image.fromarray(pixels).save(path, quality=90)
    paths.append(path)
  return paths


def _pillow(path: str) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def _pillow_draft(path: str) -> np.ndarray:
  with Image.open(path) as image:
    image.draft("RGB", (_SIZE.value, _SIZE.value))
    return np.asarray(image.convert("RGB"))


def _opencv(path: str) -> np.ndarray:
  import cv2  # pylint: disable=g-import-not-at-top

  cv2.setNumThreads(1)  # One worker, one core.
  return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _simplejpeg(path: str) -> np.ndarray:
  return image_ops.decode(path, min_side=_SIZE.value)


def _simplejpeg_any_scale(path: str) -> np.ndarray:
  import simplejpeg  # pylint: disable=g-import-not-at-top

  with open(path, "rb") as f:
    data = f.read()
  return simplejpeg.decode_jpeg(
      data, colorspace="RGB", min_height=_SIZE.value, min_width=_SIZE.value
  )


def _train_transform(decoder):
  def transform(path, rng):
    image = image_ops.random_resized_crop(rng, decoder(path), _SIZE.value)
    return image_ops.random_flip(rng, image)

  return transform


def _eval_transform(decoder):
  def transform(path, rng):
    del rng
    return image_ops.resize_center_crop(decoder(path), 256, 224)

  return transform


def _rate(transform, paths: list[str]) -> float:
  """Images per second of this process's CPU time: one worker on one core.

  CPU time rather than wall time, because the measuring machine's 2 cores
  are shared with other jobs; a worker process has a core of its own.
  """
  rng = np.random.default_rng(0)
  start = time.process_time()
  for path in paths:
    transform(path, rng)
  return len(paths) / (time.process_time() - start)


def _decode_only(decoder):
  return lambda path, rng: decoder(path)


# Each table's first row is the baseline of its ratios.
TABLES = {
    "decode + random-resized-crop 224 + flip (training)": {
        "pillow": _train_transform(_pillow),
        "pillow_draft": _train_transform(_pillow_draft),
        **({"opencv": _train_transform(_opencv)} if _HAS_OPENCV else {}),
        "simplejpeg": _train_transform(_simplejpeg),
    },
    "decode + resize 256 + center crop 224 (evaluation)": {
        "pillow": _eval_transform(_pillow),
        "simplejpeg": _eval_transform(
            lambda path: image_ops.decode(path, min_side=256)
        ),
    },
    "decode only": {
        "pillow": _decode_only(_pillow),
        **({"opencv": _decode_only(_opencv)} if _HAS_OPENCV else {}),
        "simplejpeg": _decode_only(_simplejpeg),
        "simplejpeg_any_scale": _decode_only(_simplejpeg_any_scale),
    },
}


def measure(paths: list[str], rounds: int) -> dict[str, dict[str, list[float]]]:
  """Images/s of each transform in each round, all interleaved."""
  rates = {title: {name: [] for name in row} for title, row in TABLES.items()}
  for row in TABLES.values():  # Warm the page cache and the imports.
    for transform in row.values():
      _rate(transform, paths[:10])
  for _ in range(rounds):
    for title, row in TABLES.items():
      for name, transform in row.items():
        rates[title][name].append(_rate(transform, paths))
  return rates


def table(rates: dict[str, dict[str, list[float]]], mean_bytes: float) -> str:
  """The Markdown report of :func:`measure`'s rates."""
  training = rates[next(iter(TABLES))]
  lines = [
      f"One process, {len(training['pillow'])} interleaved rounds, JPEGs of"
      f" 500 x 375 (mean {mean_bytes / 1024:.0f} KiB, quality 90)"
      " (`python -m experiments.benchmarks.decode`). Rates are images per"
      " CPU-second of the measuring process: this machine's 2 cores are"
      " shared with other jobs, so the ratios, taken round by round, are the"
      " robust figures.",
  ]
  for title, row in rates.items():
    base = next(iter(row.values()))
    lines += [
        "",
        f"**{title}**",
        "",
        "| decoder | images per CPU-second (median) | over the first row"
        f" (median of rounds) | workers for {_GPU_RATE.value:,.0f} images/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in row.items():
      median = statistics.median(values)
      ratio = statistics.median(v / b for v, b in zip(values, base))
      workers = math.ceil(_GPU_RATE.value / median)
      lines.append(f"| {name} | {median:.0f} | {ratio:.2f}x | {workers} |")
  chosen = statistics.median(training["simplejpeg"])
  verdict = "meets" if chosen >= _TARGET.value else "misses"
  lines += [
      "",
      f"The pipeline's training transform (simplejpeg) {verdict} the target"
      f" of {_TARGET.value:.0f} images/s per worker: {chosen:.0f}. A"
      f" ResNet-50 training at {_GPU_RATE.value:,.0f} images/s on one GPU"
      f" needs {math.ceil(_GPU_RATE.value / chosen)} worker cores to feed it.",
      "",
  ]
  return "\n".join(lines)


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as directory:
    paths = write_jpegs(directory, _NUM_IMAGES.value)
    mean_bytes = float(np.mean([os.path.getsize(p) for p in paths]))
    rates = measure(paths, _ROUNDS.value)
  report = table(rates, mean_bytes)
  atomic.write_atomic(_OUTPUT.value, report)
  print(report)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
