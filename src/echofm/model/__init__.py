"""The EchoFM model: video ViT encoder, masking, periodic objectives, weights I/O.

The public names are imported on first use (they load torch).
"""

_PUBLIC = {
    "EchoFM": "echofm.model.echofm", "Embedding": "echofm.model.echofm", "PretrainOutput": "echofm.model.echofm",
    "VideoEncoder": "echofm.model.echofm",
    "export_public": "echofm.model.weights", "load_encoder": "echofm.model.weights",
    "load_model": "echofm.model.weights", "save_model": "echofm.model.weights",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'echofm.model' has no attribute {name!r}")
