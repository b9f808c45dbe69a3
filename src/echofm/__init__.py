"""echofm: echocardiography video foundation models (EchoFM) for research and hospitals."""

__version__ = "0.1.0"
