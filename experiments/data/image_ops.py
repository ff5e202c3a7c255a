"""Image decoding and augmentation on the host, in the input pipeline's workers.

Every function takes and returns uint8 ``(h, w, 3)`` RGB numpy arrays (the
CIFAR crop also takes any channel count), so that uint8 crosses to the
device and normalization happens there. Randomness comes from an explicit
``np.random.Generator``: a worker seeded from the example's index and epoch
makes the same crop whatever process runs it.

The decoder was chosen by measurement (``python -m
experiments.benchmarks.decode``, results in
``experiments/results/benchmark_decode.md``): for 500 x 375 quality-90 JPEGs
(Clothing1M-like), simplejpeg (libjpeg-turbo through a thin binding) decodes
1,545 images per CPU-second, 1.57x Pillow's rate (round by round) and 1.13x
OpenCV's median rate, and the whole training transform (decode,
random-resized-crop to 224, flip) runs at 560 images per CPU-second, 1.20x
Pillow's and 1.10x OpenCV's: the resize takes most of the rest. It is also the smaller install (no OpenCV wheel),
and its pixels equal Pillow's within 2 levels (both are libjpeg-turbo).
Anything simplejpeg rejects
(PNG, GIF, a JPEG with a recoverable defect) goes to Pillow, the decoder of
torchvision's ``ImageFolder``, so an image opens here exactly when it opens
there. With ``min_side``, both decoders reduce in the DCT domain by a power
of two (libjpeg-turbo's scaled IDCT; Pillow's ``draft``), never below
``min_side`` on the shorter side. Powers of two only: libjpeg-turbo's other
factors (a 375-pixel side at 224 takes 5/8) decode slower than the full
image (1,160 images per CPU-second, the benchmark's
``simplejpeg_any_scale`` row).

Resizing is Pillow's antialiased bilinear filter, as torchvision's
``RandomResizedCrop`` / ``Resize`` apply it to PIL images, so the crops match
the literature's PyTorch pipelines pixel for pixel up to rounding.
"""

import math

import numpy as np
from PIL import Image
import simplejpeg

_JPEG_MAGIC = b"\xff\xd8"
_POWERS_OF_TWO = (8, 4, 2)  # libjpeg-turbo's fast scaled-IDCT factors.


class CorruptImage(Exception):
  """An image file that neither decoder can read.

  Attributes:
    path: the file's path.
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: cannot decode image ({reason}).")
    self.path = path


def _reduction(height: int, width: int, min_side: int | None) -> int:
  """The largest power-of-two factor keeping the shorter side >= min_side."""
  if not min_side:
    return 1
  shorter = min(height, width)
  for factor in _POWERS_OF_TWO:
    if math.ceil(shorter / factor) >= min_side:
      return factor
  return 1


def _decode_simplejpeg(data: bytes, min_side: int | None) -> np.ndarray:
  height, width, _, _ = simplejpeg.decode_jpeg_header(data)
  factor = _reduction(height, width, min_side)
  return simplejpeg.decode_jpeg(
      data,
      colorspace="RGB",
      min_height=math.ceil(height / factor) if factor > 1 else 0,
      min_width=math.ceil(width / factor) if factor > 1 else 0,
  )


def _decode_pillow(path: str, min_side: int | None) -> np.ndarray:
  with Image.open(path) as image:
    if min_side and image.format == "JPEG":
      # `draft` picks the largest of Pillow's scales (1/2, 1/4, 1/8) that
      # keeps both sides >= the requested size.
      image.draft("RGB", (min_side, min_side))
    return np.asarray(image.convert("RGB"))


def decode(path: str, *, min_side: int | None = None) -> np.ndarray:
  """Reads a JPEG (or any image Pillow opens) as uint8 RGB.

  Args:
    path: image file.
    min_side: when given, a JPEG may be decoded at 1/2, 1/4 or 1/8 of its
      size, as long as its shorter side stays >= ``min_side``; the
      preprocessing that follows resizes anyway, and the reduced decode is
      several times faster.

  Returns:
    ``(h, w, 3)`` uint8 array; grayscale, palette, CMYK and RGBA images are
    converted to RGB (alpha dropped), as ``PIL.Image.convert("RGB")`` does.

  Raises:
    CorruptImage: the file cannot be read or decoded; carries ``path``.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as err:
    raise CorruptImage(path, err.strerror or str(err)) from err
  if data[:2] == _JPEG_MAGIC:
    try:
      return _decode_simplejpeg(data, min_side)
    except ValueError:
      pass  # Pillow below decides: it also reads what libjpeg only warns on.
  try:
    return _decode_pillow(path, min_side)
  except (
      OSError, SyntaxError, ValueError, Image.DecompressionBombError
  ) as err:
    raise CorruptImage(path, str(err)) from err


def _resize_box(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
) -> np.ndarray:
  """Resizes ``image[box]`` to ``size`` = (width, height), antialiased bilinear.

  ``box`` is (left, top, right, bottom) in pixels; Pillow resamples the box
  directly, without cropping or resizing the whole image first.
  """
  pil = Image.fromarray(image)
  return np.asarray(pil.resize(size, Image.Resampling.BILINEAR, box=box))


def random_resized_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
  """Samples the crop of torchvision's ``RandomResizedCrop.get_params``.

  Ten tries at an area fraction uniform in ``scale`` and an aspect ratio
  log-uniform in ``ratio``; if none fits in the image, the central crop with
  the aspect ratio clamped to ``ratio``.

  Args:
    rng: numpy generator.
    height: image height.
    width: image width.
    scale: range of the crop's area as a fraction of the image's.
    ratio: range of the crop's width / height.

  Returns:
    ``(top, left, crop_height, crop_width)``.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    crop_w = round(math.sqrt(target_area * aspect))
    crop_h = round(math.sqrt(target_area / aspect))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      top = int(rng.integers(0, height - crop_h + 1))
      left = int(rng.integers(0, width - crop_w + 1))
      return top, left, crop_h, crop_w
  in_ratio = width / height
  if in_ratio < min(ratio):
    crop_w, crop_h = width, round(width / min(ratio))
  elif in_ratio > max(ratio):
    crop_w, crop_h = round(height * max(ratio)), height
  else:
    crop_w, crop_h = width, height
  return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def random_resized_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
  """torchvision's ``RandomResizedCrop(size, scale, ratio)`` (bilinear).

  The ImageNet training augmentation (Szegedy et al., "Going deeper with
  convolutions", 2015, as implemented in torchvision), used for the
  ResNet-50 and Inception-ResNet-v2 datasets.

  Args:
    rng: numpy generator.
    image: ``(h, w, 3)`` uint8.
    size: side of the square output.
    scale: range of the crop's area as a fraction of the image's.
    ratio: range of the crop's width / height.

  Returns:
    ``(size, size, 3)`` uint8.
  """
  height, width = image.shape[:2]
  top, left, crop_h, crop_w = random_resized_crop_box(
      rng, height, width, scale, ratio
  )
  return _resize_box(
      image, (left, top, left + crop_w, top + crop_h), (size, size)
  )


def random_flip(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  """Mirrors ``image`` left-right with probability 1/2."""
  if rng.random() < 0.5:
    return np.ascontiguousarray(image[:, ::-1])
  return image


def resize_center_crop(image: np.ndarray, resize: int, crop: int) -> np.ndarray:
  """torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` (bilinear).

  The standard evaluation preprocessing (256 -> 224 for ResNet-50, 342 ->
  299 for Inception networks, as in torchvision's pretrained weights). The
  shorter side becomes ``resize`` and the longer ``int(resize * long /
  short)``, as torchvision computes it; only the central ``crop x crop``
  window of that resized image is resampled.

  Args:
    image: ``(h, w, 3)`` uint8.
    resize: the shorter side after resizing.
    crop: side of the square output; at most ``resize``.

  Returns:
    ``(crop, crop, 3)`` uint8.

  Raises:
    ValueError: when ``crop > resize``.
  """
  if crop > resize:
    raise ValueError(f"crop {crop} is larger than the resize {resize}.")
  height, width = image.shape[:2]
  if height <= width:
    new_h, new_w = resize, int(resize * width / height)
  else:
    new_h, new_w = int(resize * height / width), resize
  top = int(round((new_h - crop) / 2.0))
  left = int(round((new_w - crop) / 2.0))
  scale_y, scale_x = height / new_h, width / new_w
  box = (
      left * scale_x, top * scale_y,
      (left + crop) * scale_x, (top + crop) * scale_y,
  )
  return _resize_box(image, box, (crop, crop))


def pad_crop_flip(
    rng: np.random.Generator, image: np.ndarray, pad: int = 4
) -> np.ndarray:
  """Random crop after zero padding, then a random horizontal flip.

  The CIFAR augmentation of the paper (torchvision ``RandomCrop(32,
  padding=4)`` + ``RandomHorizontalFlip``), the numpy twin of
  :func:`experiments.data.augment.random_crop_flip`: offsets uniform in
  ``[0, 2 * pad]`` on each axis, black padding.

  Args:
    rng: numpy generator.
    image: ``(h, w, c)`` array, any dtype.
    pad: zero padding on each side.

  Returns:
    Array of the shape and dtype of ``image``.
  """
  if pad < 0:
    raise ValueError(f"pad must be non-negative, got {pad}.")
  height, width = image.shape[:2]
  top, left = rng.integers(0, 2 * pad + 1, size=2)
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  cropped = np.ascontiguousarray(padded[top:top + height, left:left + width])
  return random_flip(rng, cropped)
