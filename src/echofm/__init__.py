"""echofm: echocardiography video foundation models (EchoFM) for research and hospitals.

Public face: ``load_model`` (preset, our saved model, or a public EchoFM checkpoint),
``ModelConfig``/``preset``, ``EchoFM``, ``Clip``/``read_clip`` (any echo source).
The names are imported on first use, so that ``import echofm`` (and ``echofm --help``)
does not load torch.
"""

__version__ = "0.1.0"

from echofm._lazy import lazy_attributes

# public name -> module that defines it
_PUBLIC = {
    "PRESETS": "echofm.config", "ModelConfig": "echofm.config", "preset": "echofm.config",
    "Clip": "echofm.io", "read_clip": "echofm.io",
    "EchoFM": "echofm.model", "export_public": "echofm.model", "load_encoder": "echofm.model",
    "load_model": "echofm.model", "save_model": "echofm.model",
    "autocast": "echofm.precision",
}

__all__ = sorted(_PUBLIC)


__getattr__ = lazy_attributes("echofm", _PUBLIC)


def __dir__():
    return sorted(list(globals()) + __all__)
