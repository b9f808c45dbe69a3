"""An uploaded MP4/AVI cine as a DICOM instance, so the study pipeline (which reads
DICOM studies) can analyse it and its SEG and SR have a source instance to refer to.

The wrapper is an Ultrasound Multi-frame Image (uncompressed, grey when the video is
grey) with fresh UIDs and an empty patient module: a video carries no patient, and the
server invents none. Its frame rate is the video's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def video_to_dicom(video: Path, out: Path) -> Path:
    """Decode ``video`` and write it to ``out`` as a US multi-frame DICOM."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from echofm.io import read_clip
    from echofm.io.clip import collapse_gray

    clip = read_clip(video)
    frames = collapse_gray(clip.frames) if clip.frames.ndim == 4 else clip.frames
    frames = np.ascontiguousarray(frames.astype(np.uint8))
    fps = clip.fps if clip.fps and clip.fps > 0 else 30.0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = US_MULTIFRAME, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", "", "", ""
    now = datetime.now()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", 1, 1
    ds.Manufacturer = "echofm serve (wrapped video upload)"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    if frames.ndim == 4:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = int(frames.shape[0])
    ds.FrameTime = f"{1000.0 / fps:.4f}"
    ds.CineRate = int(round(fps))
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x0018, 0x1063)
    ds.PixelData = frames.tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out
