"""The names of the choices the library offers (data formats, tasks' training modes,
heads, poolings, disease label schemes), in a module that imports nothing.

Command-line help lists them without loading torch; the modules that implement each
choice import its names from here, so a name is written once.
"""

from __future__ import annotations

DATASET_FORMATS = ("echonet", "camus", "tmed", "lvh", "pediatric", "csv")  # read by echofm.datasets
PHANTOM_FORMATS = ("echonet", "camus", "dicom", "tmed", "folder")  # written by echofm.phantom.export
TRAINING_MODES = ("linear", "attentive", "full")  # what fine-tuning trains (echofm.tasks.adapter)
SEG_HEADS = ("linear", "unetr")  # segmentation decoders (echofm.tasks.adapter)
POOLINGS = ("mean", "stats")  # how a probe pools the encoder's tokens (echofm.model.heads)
DISEASE_SCHEMES = ("as4", "as3", "ar", "multiclass", "multilabel")  # echofm.tasks.disease
BACKENDS = ("torch", "onnx")  # engines that run a model (echofm.runtime.backend)
EXPORT_FORMATS = ("onnx",)  # `echofm export --format` (echofm.runtime.onnx)
QUANTIZATIONS = ("int8",)  # `echofm export --quantize` (echofm.runtime.onnx)
