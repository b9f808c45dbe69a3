"""The EchoFM model: video ViT encoder, masking, periodic objectives, weights I/O."""

from echofm.model.echofm import EchoFM, Embedding, PretrainOutput, VideoEncoder
from echofm.model.weights import export_public, load_encoder, load_model, save_model

__all__ = ["EchoFM", "Embedding", "PretrainOutput", "VideoEncoder", "export_public", "load_encoder",
           "load_model", "save_model"]
