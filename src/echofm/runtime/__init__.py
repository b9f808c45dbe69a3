"""How a model runs on the machine at hand: hardware facts, precision, backend, threads.

``hardware.detect()`` reads what the CPU and torch report; ``precision.resolve_precision``
turns ``auto``/``fp32``/``bf16`` into what runs (bf16 only where it is native);
``backend`` picks torch or ONNX Runtime; ``threads`` sizes torch's thread pool;
``onnx`` exports models to ONNX and runs them with ONNX Runtime (optional extra).
"""

from echofm.runtime.backend import BACKENDS, load_inference_model
from echofm.runtime.hardware import CudaDevice, Hardware, detect
from echofm.runtime.precision import PRECISION_CHOICES, PRECISIONS, autocast, resolve_precision
from echofm.runtime.threads import configure_threads

__all__ = ["BACKENDS", "CudaDevice", "Hardware", "PRECISIONS", "PRECISION_CHOICES", "autocast",
           "configure_threads", "detect", "load_inference_model", "resolve_precision"]
