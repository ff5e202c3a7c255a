"""Data for the CDR experiments: sources, the dataset table, noise, protocol.

* ``specs``: one table of what depends on a dataset's name;
* ``dataset`` / ``loading``: a clean dataset in memory, from tfds (``tfds_source``),
  IDX files (``idx``) or ``.npy`` files (``npy``);
* ``noise`` / ``instance_noise``: the paper's four label-noise models;
* ``protocol``: noise on the training set, then the noisy 90/10 split;
* ``augment``: normalization and crop + flip, inside the jitted step.
"""

from experiments.data.dataset import Dataset
from experiments.data.dataset import Split
from experiments.data.loading import config_key
from experiments.data.loading import load_configured
from experiments.data.loading import load_dataset
from experiments.data.protocol import make_noisy_dataset
from experiments.data.protocol import NoisyDataset
from experiments.data.specs import DatasetSpec
from experiments.data.specs import get_spec

__all__ = (
    "Dataset", "DatasetSpec", "NoisyDataset", "Split", "config_key",
    "get_spec", "load_configured", "load_dataset", "make_noisy_dataset",
)
