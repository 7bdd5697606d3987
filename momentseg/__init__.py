"""MomentSeg: text-prompted video object segmentation with moment grounding, for CVAT."""

__version__ = "0.1.0"
