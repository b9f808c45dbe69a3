"""Preprocessing: find and blank the ultrasound sector, crop, resize, resample; `echofm prepare` as a library."""
