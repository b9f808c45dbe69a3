"""Probes that read frozen features: closed-form ridge probes (``ridge``); the gradient-trained
heads live with the model (``echofm.model.heads``)."""
