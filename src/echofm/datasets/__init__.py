"""Datasets over prepared caches and public echo datasets."""
