"""Anatomical regions that follow each image, and tidy per-region scores of relevance maps.

>>> from xaikit.regions import grid, region_scores
"""
from .builders import (
                       FACE_PARSING_LABELS,
                       FACE_REGIONS,
                       boxes,
                       chest_partition,
                       face_boxes,
                       from_labelmap,
                       from_masks,
                       grid,
                       lung_zones,
                       polygons,
)
from .lungs import SEGMENTERS, LungSegmentation, dice, register_segmenter, segment_lungs
from .regionset import RegionSet
from .scores import NORMALIZATIONS, REGION_COLUMNS, SIGN_POLICIES, region_scores
from .volume import label_regions, stack_regions

__all__ = [
    "RegionSet", "grid", "from_masks", "lung_zones", "chest_partition", "from_labelmap", "boxes", "face_boxes",
    "FACE_PARSING_LABELS", "FACE_REGIONS", "polygons",
    "LungSegmentation", "SEGMENTERS", "register_segmenter", "segment_lungs", "dice",
    "region_scores", "REGION_COLUMNS", "SIGN_POLICIES", "NORMALIZATIONS", "label_regions", "stack_regions",
]
