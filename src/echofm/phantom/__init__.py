"""Synthetic echocardiography with exact ground truth (the embedded default data).

``generate_case(seed, config)`` makes one clip (uint8 ``[T, H, W]`` frames and label maps)
with its truth; ``export.write_dataset`` lays many out as a public data set would;
``export.write_study`` writes one patient's exam (several views of one heart) as DICOM. The
names are imported on first use (the generator loads numpy and OpenCV).
"""

from echofm._lazy import lazy_attributes

_PUBLIC = {
    "Patient": "echofm.phantom.physiology",
    "PhantomConfig": "echofm.phantom.config", "phantom_preset": "echofm.phantom.config",
    "PhantomCase": "echofm.phantom.case", "case_seed": "echofm.phantom.case", "generate_case": "echofm.phantom.case",
    "generate_cases": "echofm.phantom.case", "sample_patient": "echofm.phantom.case",
    "FORMATS": "echofm.phantom.export", "write_dataset": "echofm.phantom.export",
    "write_study": "echofm.phantom.export",
}

__all__ = sorted(_PUBLIC)


__getattr__ = lazy_attributes("echofm.phantom", _PUBLIC)
