"""From an echo study export to results a clinician and a PACS can check.

``run_study(src, bundle, out, StudyConfig())`` (``pipeline``) runs every cine of a study
through a model bundle (``bundle``: ``create_bundle``, ``load_bundle``,
``phantom_bundle``), aggregates per study and writes ``study.json``, ``report.html``
(``report``) and DICOM SEG and SR (``dicom_out``, with ``deid`` deciding what of the
source header they carry). ``scan`` finds and groups the cines; ``beats`` measures EF
beat by beat.
"""

from echofm.study.bundle import Bundle, PhantomBundleConfig, create_bundle, load_bundle, phantom_bundle
from echofm.study.pipeline import StudyConfig, StudyRun, run_study

__all__ = ["Bundle", "PhantomBundleConfig", "StudyConfig", "StudyRun", "create_bundle", "load_bundle",
           "phantom_bundle", "run_study"]
