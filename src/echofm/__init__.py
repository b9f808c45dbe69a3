"""echofm: echocardiography video foundation models (EchoFM) for research and hospitals.

Public face: ``load_model`` (preset, our saved model, or a public EchoFM checkpoint),
``ModelConfig``/``preset``, ``EchoFM``, ``Clip``/``read_clip`` (any echo source).
The names are imported on first use, so that ``import echofm`` (and ``echofm --help``)
does not load torch.
"""

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "PRESETS": "echofm.config", "ModelConfig": "echofm.config", "preset": "echofm.config",
    "Clip": "echofm.io", "read_clip": "echofm.io",
    "EchoFM": "echofm.model", "export_public": "echofm.model", "load_encoder": "echofm.model",
    "load_model": "echofm.model", "save_model": "echofm.model",
    "autocast": "echofm.precision",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'echofm' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
