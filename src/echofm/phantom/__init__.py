"""Synthetic echocardiography with exact ground truth (the embedded default data).

``generate_case(seed, config)`` makes one clip (uint8 ``[T, H, W]`` frames and label maps)
with its truth; ``export.write_dataset`` lays many out as a public data set would.
"""

from echofm.phantom.anatomy import Patient
from echofm.phantom.case import (PhantomCase, PhantomConfig, case_seed, generate_case, generate_cases,
                                 sample_patient)

__all__ = ["Patient", "PhantomCase", "PhantomConfig", "case_seed",
           "generate_case", "generate_cases", "sample_patient", "FORMATS", "write_dataset"]


def __getattr__(name):
    # The exporters pull in video/NIfTI/DICOM writers; import them only when asked.
    if name in ("FORMATS", "write_dataset"):
        from echofm.phantom import export
        return getattr(export, name)
    raise AttributeError(name)
