"""echofm: echocardiography video foundation models (EchoFM) for research and hospitals.

Public face: ``load_model`` (preset, our saved model, or a public EchoFM checkpoint),
``ModelConfig``/``preset``, ``EchoFM``, ``Clip``/``read_clip`` (any echo source).
"""

__version__ = "0.1.0"

from echofm.config import PRESETS, ModelConfig, preset
from echofm.io import Clip, read_clip
from echofm.model import EchoFM, export_public, load_encoder, load_model, save_model
from echofm.precision import autocast

__all__ = ["Clip", "EchoFM", "ModelConfig", "PRESETS", "autocast", "export_public", "load_encoder",
           "load_model", "preset", "read_clip", "save_model"]
