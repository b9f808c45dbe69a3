"""Datasets: the prepared pretraining cache (``cache``) and task datasets in the public
datasets' own layouts (and a generic CSV manifest); ``phantom_task_dataset`` makes one
from generated phantoms in memory.

``read_dataset(format, root, ...)`` dispatches to the readers; each returns a
``DatasetIndex`` of ``Sample``s (see ``echofm.datasets.base`` for the skip policy).
The names are imported on first use (the readers load numpy).
"""

from echofm._lazy import lazy_attributes

_PUBLIC = {
    "DatasetError": "echofm.datasets.base", "DatasetIndex": "echofm.datasets.base", "Sample": "echofm.datasets.base",
    "load_video": "echofm.datasets.base",
    "phantom_task_dataset": "echofm.datasets.phantom",
    "FORMATS": "echofm.datasets.registry", "read_dataset": "echofm.datasets.registry",
}

__all__ = sorted(_PUBLIC)


__getattr__ = lazy_attributes("echofm.datasets", _PUBLIC)
