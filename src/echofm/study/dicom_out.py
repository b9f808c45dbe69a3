"""DICOM outputs of a study, built with highdicom: a Segmentation (SEG) of the LV per
analysed cine and a TID 1500 Measurement Report (Enhanced SR) per study.

Where highdicom cannot express ultrasound cines (``docs/study.md``): a US Multi-frame
Image has no Frame of Reference, and highdicom 0.28 builds a SEG of such a source only
for a single spatial location (one frame). The closest valid form written here: one SEG
per cine whose segments are the LV cavity at each source frame (segment *k* = the LV at
the frame named in its description, all sharing one tracking UID), each SEG frame
referring to its source frame by ReferencedFrameNumber in its Derivation Image Sequence
(set after highdicom built the object, with Patient Orientation, type 2C, left empty
as a US cine states none; the Pixel Measures highdicom would copy need a Slice
Thickness a cine lacks, so they are left out).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset

ALGORITHM_NAME = "echofm"
MANUFACTURER = "echofm"


def _version() -> str:
    from echofm import __version__

    return __version__


def _algorithm(name: str = ALGORITHM_NAME):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(name=name, version=_version(),
                                              family=codes.cid7162.ArtificialIntelligence)


def write_lv_seg(path: str | Path, source: Dataset, masks: np.ndarray, series_uid: str, series_number: int,
                 label: Optional[str] = None, model_name: str = ALGORITHM_NAME) -> Path:
    """A binary SEG of ``masks`` (bool [T, Rows, Columns] in the source's pixel grid, one per
    source frame) referring to ``source`` (a header from ``deid.reference_header``).

    Frames with no LV are omitted; ``label`` defaults to the LV cavity's title in
    ``echofm.labels``. Returns ``path``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from echofm.labels import LV_CAVITY, STRUCTURE_TITLES

    label = label or STRUCTURE_TITLES[LV_CAVITY]

    masks = np.asarray(masks, dtype=bool)
    T = int(source.get("NumberOfFrames", 1) or 1)
    if masks.shape != (T, source.Rows, source.Columns):
        raise ValueError(f"masks {masks.shape} do not match the source's {T} frames of {source.Rows}x{source.Columns}")
    frames = [t for t in range(T) if masks[t].any()]
    if not frames:
        raise ValueError("no LV segmented in any frame: nothing to write as a SEG")
    tracking_uid = hd.UID()
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k + 1, segment_label=f"{label} frame {t + 1}"[:64],
        segmented_property_category=codes.SCT.AnatomicalStructure, segmented_property_type=codes.SCT.LeftVentricle,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=_algorithm(model_name),
        tracking_id=label, tracking_uid=tracking_uid) for k, t in enumerate(frames)]
    # highdicom refuses a multi-frame source without a Frame of Reference; it is shown the
    # source as one frame (the spatial location all frames share), and each SEG frame
    # then names its source frame below.
    single = Dataset()
    single.update(source)
    single.NumberOfFrames = 1
    shared = Dataset()
    shared.PixelMeasuresSequence = [Dataset()]  # what highdicom reads from a multi-frame source; dropped below
    single.SharedFunctionalGroupsSequence = [shared]
    pixel = np.stack([masks[t] for t in frames], axis=-1)[None]  # [1, R, C, segments]
    seg = hd.seg.Segmentation(
        source_images=[single], pixel_array=pixel.astype(np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=series_uid, series_number=int(series_number),
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=model_name[:64], software_versions=_version(), device_serial_number="0",
        content_label="LV", content_description=f"{label} per frame", omit_empty_frames=False)
    # General Image: Patient Orientation is type 2C when there is no patient geometry
    # (a US cine has none): present and empty.
    seg.PatientOrientation = ""
    # Pixel Measures needs a SliceThickness, which a US cine does not state; the source's
    # ultrasound regions stay its calibration.
    del seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    for item in seg.PerFrameFunctionalGroupsSequence:
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        derivation = item.DerivationImageSequence[0]
        # highdicom shares one source item between frames: each frame gets its own copy.
        ref = copy.deepcopy(derivation.SourceImageSequence[0])
        ref.ReferencedFrameNumber = frames[segment - 1] + 1
        derivation.SourceImageSequence = [ref]
    seg.save_as(path, enforce_file_format=True)
    return Path(path)


@dataclass
class ClipMeasurements:
    """What the SR says about one analysed cine."""

    source: Dataset
    view: str
    view_confidence: float
    ef: Optional[float] = None
    ef_regressor: Optional[float] = None
    heart_rate: Optional[float] = None
    # The EF regressor beat by beat: one EF per beat, and their spread (SD; None: one beat or none).
    ef_regressor_beats: Sequence[float] = ()
    ef_regressor_sd: Optional[float] = None


VIEW_CODES = {"A4C": ("399214001", "Apical four chamber view"), "A2C": ("399232001", "Apical two chamber view"),
              "PLAX": ("399228006", "Parasternal long axis view"), "PSAX": ("399162004", "Parasternal short axis view")}


def _code(value: str, scheme: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def write_measurement_report(path: str | Path, study_header: Dataset, clips: Sequence[ClipMeasurements],
                             study_values: dict, series_uid: str, series_number: int,
                             model_name: str = ALGORITHM_NAME) -> Path:
    """An Enhanced SR holding a TID 1500 Measurement Report: one measurement group per
    contributing clip (its view, EF and heart rate, referring to the clip's instance) and
    one for the study (``study_values``: ``ef``, ``heart_rate``, ``ef_regressor`` as
    weighted means). The EF regressor's values name their own algorithm ("... EF
    regressor"): per clip its EF of each beat, their mean (derivation Mean) and standard
    deviation (derivation Standard Deviation), beside the segmentation's EF.

    ``study_header`` is any of the study's reference headers (it gives the patient and
    study modules); returns ``path``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    ef_name, hr_name = codes.LN.LeftVentricularEjectionFractionByUS, codes.LN.HeartRate
    percent, bpm = _code("%", "UCUM", "percent"), _code("{H.B.}/min", "UCUM", "BPM")
    mean = _code("373098007", "SCT", "Mean")
    algorithm = hd.sr.AlgorithmIdentification(name=model_name[:64], version=_version())
    regressor = hd.sr.AlgorithmIdentification(name=f"{model_name[:50]} EF regressor", version=_version())
    sd = _code("386136009", "SCT", "Standard Deviation")
    groups = []
    for k, clip in enumerate(clips):
        measurements = []
        if clip.ef is not None:
            measurements.append(hd.sr.Measurement(name=ef_name, value=round(float(clip.ef), 3), unit=percent,
                                                  algorithm_id=algorithm))
        for value in clip.ef_regressor_beats:
            measurements.append(hd.sr.Measurement(name=ef_name, value=round(float(value), 3), unit=percent,
                                                  algorithm_id=regressor))
        if clip.ef_regressor is not None:
            measurements.append(hd.sr.Measurement(name=ef_name, value=round(float(clip.ef_regressor), 3),
                                                  unit=percent, derivation=mean, algorithm_id=regressor))
        if clip.ef_regressor_sd is not None:
            measurements.append(hd.sr.Measurement(name=ef_name, value=round(float(clip.ef_regressor_sd), 3),
                                                  unit=percent, derivation=sd, algorithm_id=regressor))
        if clip.heart_rate is not None:
            measurements.append(hd.sr.Measurement(name=hr_name, value=round(float(clip.heart_rate), 3), unit=bpm,
                                                  algorithm_id=algorithm))
        value, meaning = VIEW_CODES.get(clip.view, ("261665006", "Unknown"))
        evaluations = [hd.sr.QualitativeEvaluation(name=codes.DCM.ImageView, value=_code(value, "SCT", meaning))]
        ref = hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=clip.source.SOPClassUID, referenced_sop_instance_uid=clip.source.SOPInstanceUID)
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"clip {k + 1}"),
            measurements=measurements or None, qualitative_evaluations=evaluations, source_images=[ref]))
    study_measurements = []
    if study_values.get("ef") is not None:
        study_measurements.append(hd.sr.Measurement(name=ef_name, value=round(float(study_values["ef"]), 3),
                                                    unit=percent, derivation=mean, algorithm_id=algorithm))
    if study_values.get("ef_regressor") is not None:
        study_measurements.append(hd.sr.Measurement(name=ef_name, value=round(float(study_values["ef_regressor"]), 3),
                                                    unit=percent, derivation=mean, algorithm_id=regressor))
    if study_values.get("heart_rate") is not None:
        study_measurements.append(hd.sr.Measurement(name=hr_name, value=round(float(study_values["heart_rate"]), 3),
                                                    unit=bpm, derivation=mean, algorithm_id=algorithm))
    if study_measurements:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="study"),
            measurements=study_measurements))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=model_name[:64], manufacturer_name=MANUFACTURER))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.Echocardiography, imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport)
    sr = hd.sr.EnhancedSR(
        evidence=[c.source for c in clips], content=report[0], series_instance_uid=series_uid,
        series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description="echofm measurement report")
    sr.save_as(path, enforce_file_format=True)
    return Path(path)
