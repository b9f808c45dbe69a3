"""Readers and writers of echo sources (DICOM, video, NIfTI, MetaImage, arrays, frames)."""

from echofm.io.clip import Clip
from echofm.io.registry import find_reader, read_clip

__all__ = ["Clip", "find_reader", "read_clip"]
