"""The EchoFM model: video ViT encoder, masking, periodic objectives, weights I/O.

The public names are imported on first use (they load torch).
"""

from echofm._lazy import lazy_attributes

_PUBLIC = {
    "EchoFM": "echofm.model.echofm", "Embedding": "echofm.model.echofm", "PretrainOutput": "echofm.model.echofm",
    "VideoEncoder": "echofm.model.echofm",
    "export_public": "echofm.model.weights", "load_encoder": "echofm.model.weights",
    "load_model": "echofm.model.weights", "save_model": "echofm.model.weights",
}

__all__ = sorted(_PUBLIC)


__getattr__ = lazy_attributes("echofm.model", _PUBLIC)
