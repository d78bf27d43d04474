"""Batching of in-memory arrays (and later files, text and audio)."""
from ember.data.arrays import ArrayData

__all__ = ["ArrayData"]
