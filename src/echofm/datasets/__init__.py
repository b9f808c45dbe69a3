"""Datasets: the prepared pretraining cache (``cache``) and task datasets in the public
datasets' own layouts (and a generic CSV manifest); ``phantom_task_dataset`` makes one
from generated phantoms in memory.

``read_dataset(format, root, ...)`` dispatches to the readers; each returns a
``DatasetIndex`` of ``Sample``s (see ``echofm.datasets.base`` for the skip policy).
"""

from echofm.datasets.base import DatasetError, DatasetIndex, Sample, load_video
from echofm.datasets.phantom import phantom_task_dataset
from echofm.datasets.registry import FORMATS, read_dataset

__all__ = ["DatasetError", "DatasetIndex", "FORMATS", "Sample", "load_video", "phantom_task_dataset", "read_dataset"]
