"""What of a source DICOM header an output may carry: its patient and study modules, or
(``--deidentify``) those modules replaced as the DICOM PS3.15 basic profile says.

``reference_header(path, deidentify, uids)`` reads a source's header (no pixels) and
returns a copy holding only what highdicom needs to build a derived object that refers
to it: the patient module, the general study module, the SOP and series identifiers and
the image geometry. Nothing else of the source (institution, operators, device serial,
dates of the series) can then reach an output.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from pydicom.dataset import Dataset

# Patient module (PS3.3 C.7.1.1) and General Study module (C.7.2.1) attributes carried over.
PATIENT_MODULE = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                  "PatientAge", "OtherPatientIDsSequence", "EthnicGroup", "PatientComments")
STUDY_MODULE = ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                "AccessionNumber", "StudyDescription")
# What highdicom reads to refer to a source image (no identifier among them).
REFERENCE_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "Rows", "Columns",
                        "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                        "BitsStored", "HighBit", "PixelRepresentation", "FrameOfReferenceUID",
                        "PositionReferenceIndicator", "PixelSpacing", "SequenceOfUltrasoundRegions",
                        "SpecificCharacterSet")

# PS3.15 Annex E basic profile actions for the attributes above: Z = replace with a
# zero-length (or dummy) value, X = remove, U = replace with a consistent new UID.
BASIC_PROFILE = {"PatientName": "Z", "PatientID": "Z", "IssuerOfPatientID": "X", "PatientBirthDate": "Z",
                 "PatientSex": "Z", "PatientAge": "X", "OtherPatientIDsSequence": "X", "EthnicGroup": "X",
                 "PatientComments": "X", "StudyDate": "Z", "StudyTime": "Z", "ReferringPhysicianName": "Z",
                 "StudyID": "Z", "AccessionNumber": "Z", "StudyDescription": "X", "StudyInstanceUID": "U",
                 "SeriesInstanceUID": "U", "SOPInstanceUID": "U", "FrameOfReferenceUID": "U"}
# Dummy values where a type 1 or 2 attribute must stay present.
DUMMY = {"PatientName": "ANONYMOUS^", "PatientID": "ANONYMOUS"}


class UIDMap:
    """Replaces UIDs consistently (the same source UID always maps to the same new one)
    with a secret salt, so the new UIDs reveal nothing about the old ones."""

    def __init__(self, salt: str):
        self.salt = salt

    def __call__(self, uid: str) -> str:
        digest = hashlib.blake2b(f"{self.salt}:{uid}".encode(), digest_size=16).digest()
        return "2.25." + str(int.from_bytes(digest, "big"))


def deidentify_header(ds: Dataset, uids: UIDMap) -> Dataset:
    """The basic profile applied (in place) to the attributes ``reference_header`` keeps;
    also sets PatientIdentityRemoved and the de-identification method."""
    for keyword, action in BASIC_PROFILE.items():
        if keyword not in ds:
            continue
        if action == "X":
            delattr(ds, keyword)
        elif action == "Z":
            setattr(ds, keyword, DUMMY.get(keyword, ""))
        elif action == "U" and ds.get(keyword):
            setattr(ds, keyword, uids(str(ds.get(keyword))))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Basic Application Confidentiality Profile (echofm)"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    return ds


def reference_header(path: str | Path, deidentify: bool = False, uids: Optional[UIDMap] = None) -> Dataset:
    """The parts of ``path``'s header an output may carry (see the module docstring)."""
    import pydicom

    source = pydicom.dcmread(path, stop_before_pixels=True)
    ds = Dataset()
    for keyword in PATIENT_MODULE + STUDY_MODULE + REFERENCE_ATTRIBUTES:
        if keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)
    if deidentify:
        if uids is None:
            raise ValueError("deidentify needs a UIDMap")
        deidentify_header(ds, uids)
    return ds
