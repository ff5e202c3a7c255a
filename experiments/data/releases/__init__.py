"""Readers of the real-noise datasets' release layouts, one module each.

Each ``read`` returns an :class:`experiments.data.image_list.FolderDataset`
from the release's list files, without opening an image;
``experiments.data.folders.read_folder_dataset`` picks the reader by name.
"""
