"""Readers and writers of echo sources (DICOM, video, NIfTI, MetaImage, arrays, frames)."""

from echofm.io.clip import Clip

__all__ = ["Clip"]
