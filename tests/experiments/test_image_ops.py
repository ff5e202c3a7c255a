"""Tests for the workers' image ops (experiments/data/image_ops.py)."""

import numpy as np
from PIL import Image
import pytest
import simplejpeg

from experiments.data import image_ops


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
  """A smooth random RGB image (JPEG keeps it close to the original)."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3))
  pil = Image.fromarray(coarse.astype(np.uint8))
  return np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC))


def _save(tmp_path, name, array, **kwargs) -> str:
  path = str(tmp_path / name)
  Image.fromarray(array).save(path, **kwargs)
  return path


# ---------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------


def test_decode_jpeg_matches_pillow(tmp_path):
  path = _save(tmp_path, "a.jpg", _photo(48, 64), quality=90)
  image = image_ops.decode(path)
  assert image.shape == (48, 64, 3) and image.dtype == np.uint8
  with Image.open(path) as pil:
    reference = np.asarray(pil.convert("RGB")).astype(int)
  assert np.abs(image.astype(int) - reference).max() <= 2


@pytest.mark.parametrize(
    "mode, channels", [("L", None), ("RGBA", 4), ("P", None)]
)
def test_decode_other_modes_as_rgb(tmp_path, mode, channels):
  rgb = _photo(20, 30)
  pil = Image.fromarray(rgb)
  if channels == 4:
    pil = Image.fromarray(np.dstack([rgb, np.full((20, 30), 7, np.uint8)]))
  else:
    pil = pil.convert(mode)
  path = str(tmp_path / "b.png")
  pil.save(path)
  image = image_ops.decode(path)
  assert image.shape == (20, 30, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image, np.asarray(pil.convert("RGB")))


def test_decode_grayscale_jpeg_as_rgb(tmp_path):
  gray = _photo(24, 32)[..., 0]
  path = _save(tmp_path, "g.jpg", gray, quality=95)
  image = image_ops.decode(path)
  assert image.shape == (24, 32, 3)
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize(
    "min_side, expected", [(None, (160, 200)), (100, (160, 200)),
                           (80, (80, 100)), (40, (40, 50)), (20, (20, 25)),
                           (3, (20, 25))]
)
def test_decode_min_side_reduces_by_powers_of_two(tmp_path, min_side, expected):
  path = _save(tmp_path, "big.jpg", _photo(160, 200), quality=90)
  image = image_ops.decode(path, min_side=min_side)
  assert image.shape[:2] == expected
  assert min(image.shape[:2]) >= (min_side or 0)


def test_decode_min_side_on_pillow_path(tmp_path):
  # A JPEG that libjpeg only warns about (junk after the image) goes to
  # Pillow; its draft reduction keeps the same floor.
  path = _save(tmp_path, "warn.jpg", _photo(160, 200), quality=90)
  with open(path, "rb") as f:
    data = f.read()
  end = data.rindex(b"\xff\xd9")
  data = data[:end] + b"\x00\x01junk" + data[end:]
  with open(path, "wb") as f:
    f.write(data)
  with pytest.raises(ValueError, match="extraneous bytes"):
    simplejpeg.decode_jpeg(data, colorspace="RGB")
  image = image_ops.decode(path, min_side=40)
  assert image.shape == (40, 50, 3)


def test_decode_corrupt_files(tmp_path):
  garbage = tmp_path / "garbage.jpg"
  garbage.write_bytes(b"\xff\xd8 this is not a jpeg")
  text = tmp_path / "notes.jpg"
  text.write_text("hello")
  full = _save(tmp_path, "t.jpg", _photo(64, 64, seed=3), quality=90)
  truncated = tmp_path / "truncated.jpg"
  with open(full, "rb") as f:
    truncated.write_bytes(f.read()[:400])
  for path in (garbage, text, truncated, tmp_path / "missing.jpg"):
    with pytest.raises(image_ops.CorruptImage, match="cannot decode") as err:
      image_ops.decode(str(path))
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------
# random_resized_crop
# ---------------------------------------------------------------------------


def test_random_resized_crop_box_statistics():
  rng = np.random.default_rng(0)
  height, width = 375, 500
  boxes = np.array([
      image_ops.random_resized_crop_box(rng, height, width)
      for _ in range(4000)
  ])
  top, left, crop_h, crop_w = boxes.T
  assert np.all((top >= 0) & (left >= 0) & (crop_h > 0) & (crop_w > 0))
  assert np.all((top + crop_h <= height) & (left + crop_w <= width))
  area = crop_h * crop_w / (height * width)
  aspect = crop_w / crop_h
  # Rounding to whole pixels moves the bounds a little.
  assert area.min() >= 0.075 and area.max() <= 1.0
  assert aspect.min() >= 0.74 and aspect.max() <= 1.35
  # A wide image rejects more tall crops than wide ones...
  assert np.mean(np.log(aspect)) > 0.01
  # ...a square one rejects them alike: log aspects centre on 0.
  square = np.array([
      image_ops.random_resized_crop_box(rng, 400, 400) for _ in range(4000)
  ])
  assert abs(np.mean(np.log(square[:, 3] / square[:, 2]))) < 0.02
  # Every aspect ratio fits below an area fraction of 0.75 * 3/4 = 0.5625
  # (the crop's height reaches the image's there), so below it the accepted
  # fractions stay uniform; above it, crops that do not fit are redrawn.
  low = area[area < 0.5625]
  halves = np.histogram(low, bins=2, range=(0.08, 0.5625))[0]
  assert abs(halves[0] - halves[1]) < 0.1 * len(low)
  assert area.max() > 0.9
  # Offsets spread over the free room: a crop's centre is as often left as
  # right of the image's centre.
  centre_x = (left + crop_w / 2) / width
  assert abs(np.mean(centre_x) - 0.5) < 0.02


@pytest.mark.parametrize(
    "height, width, expected",
    [
        # Wider than 4/3: full height, width clamped to 4/3 of it.
        (100, 400, (0, (400 - 133) // 2, 100, 133)),
        # Taller than 3/4: full width, height clamped.
        (400, 90, ((400 - 120) // 2, 0, 120, 90)),
        # Within the ratio range: the whole image.
        (100, 120, (0, 0, 100, 120)),
    ],
)
def test_random_resized_crop_fallback_is_central(height, width, expected):
  # An area fraction above 1 never fits: ten misses, then the fallback.
  rng = np.random.default_rng(0)
  box = image_ops.random_resized_crop_box(rng, height, width, scale=(2, 3))
  assert box == expected


def test_random_resized_crop_output_and_determinism():
  image = _photo(75, 100)
  out = image_ops.random_resized_crop(np.random.default_rng(5), image, 32)
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  again = image_ops.random_resized_crop(np.random.default_rng(5), image, 32)
  np.testing.assert_array_equal(out, again)
  others = [
      image_ops.random_resized_crop(np.random.default_rng(s), image, 32)
      for s in range(6, 10)
  ]
  assert any(not np.array_equal(out, o) for o in others)


def test_random_resized_crop_whole_image_is_a_resize():
  image = _photo(60, 80)
  out = image_ops.random_resized_crop(
      np.random.default_rng(0), image, 40, scale=(1.0, 1.0),
      ratio=(80 / 60, 80 / 60),
  )
  reference = Image.fromarray(image).resize((40, 40), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(out, np.asarray(reference))


# ---------------------------------------------------------------------------
# random_flip, resize_center_crop, pad_crop_flip
# ---------------------------------------------------------------------------


def test_random_flip():
  image = _photo(8, 12)
  rng = np.random.default_rng(0)
  flips = 0
  for _ in range(1000):
    out = image_ops.random_flip(rng, image)
    if np.array_equal(out, image):
      continue
    np.testing.assert_array_equal(out, image[:, ::-1])
    assert out.flags.c_contiguous
    flips += 1
  assert 430 < flips < 570  # Binomial(1000, 1/2): 4.4 standard deviations.


@pytest.mark.parametrize(
    "height, width, resize, crop",
    [(375, 500, 256, 224), (500, 375, 342, 299), (90, 120, 64, 56),
     (300, 300, 256, 224)],
)
def test_resize_center_crop_is_resize_then_crop(height, width, resize, crop):
  image = _photo(height, width)
  out = image_ops.resize_center_crop(image, resize, crop)
  assert out.shape == (crop, crop, 3) and out.dtype == np.uint8
  # torchvision: shorter side -> resize, longer int(resize * long / short);
  # then the centre crop, offsets rounded.
  if height <= width:
    new_h, new_w = resize, int(resize * width / height)
  else:
    new_h, new_w = int(resize * height / width), resize
  full = np.asarray(
      Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
  )
  top = int(round((new_h - crop) / 2))
  left = int(round((new_w - crop) / 2))
  reference = full[top:top + crop, left:left + crop].astype(int)
  # Resampling only the window agrees with resampling all, up to rounding.
  assert np.abs(out.astype(int) - reference).max() <= 2


def test_resize_center_crop_rejects_crop_above_resize():
  with pytest.raises(ValueError, match="crop 300 is larger than the resize"):
    image_ops.resize_center_crop(_photo(10, 10), 256, 300)


def test_pad_crop_flip_windows_of_the_padded_image():
  image = np.arange(6 * 5 * 2, dtype=np.uint8).reshape(6, 5, 2) + 1
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  rng = np.random.default_rng(0)
  seen = set()
  for _ in range(600):
    out = image_ops.pad_crop_flip(rng, image)
    assert out.shape == image.shape and out.dtype == image.dtype
    matches = [
        (top, left, flip)
        for top in range(9) for left in range(9) for flip in (0, 1)
        if np.array_equal(
            out,
            padded[top:top + 6, left:left + 5][:, ::-1] if flip
            else padded[top:top + 6, left:left + 5],
        )
    ]
    assert matches, "output is not a (flipped) window of the padded image"
    seen.update(matches)
  tops = {t for t, _, _ in seen}
  lefts = {l for _, l, _ in seen}
  assert tops == set(range(9)) and lefts == set(range(9))
  assert {f for _, _, f in seen} == {0, 1}


def test_pad_crop_flip_determinism_and_validation():
  image = _photo(32, 32)
  a = image_ops.pad_crop_flip(np.random.default_rng(1), image)
  b = image_ops.pad_crop_flip(np.random.default_rng(1), image)
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="pad must be non-negative"):
    image_ops.pad_crop_flip(np.random.default_rng(1), image, pad=-1)

