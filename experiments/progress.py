"""What a running epoch shows: a tqdm bar with images/s and the input wait."""

import sys
import time

import tqdm


class EpochProgress:
  """Counts an epoch's steps from `start`; the bar shows images/s and the
  fraction of time the loop waited for data (`calls.input_wait_s`)."""

  def __init__(self, config, epoch: int, total: int, start: int,
               batch_size: int, calls):
    self._start, self.done, self._batch, self._calls = start, start, batch_size, calls
    self._bar = tqdm.tqdm(
        total=total, initial=start, desc=f"epoch {epoch}", unit="step",
        leave=False, disable=not (config.log_progress and sys.stderr.isatty()),
    )
    self._begin = time.perf_counter()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._bar.close()

  def advance(self, num_steps: int) -> None:
    self.done += num_steps
    self._bar.update(num_steps)
    rates = self.rates()
    self._bar.set_postfix(img_s=f"{rates['images_per_s']:.0f}",
                          wait=f"{rates['input_wait']:.0%}")

  def rates(self) -> dict[str, float]:
    """Images per second and the input-wait fraction so far."""
    elapsed = max(time.perf_counter() - self._begin, 1e-9)
    return {"images_per_s": (self.done - self._start) * self._batch / elapsed,
            "input_wait": self._calls.input_wait_s / elapsed}
