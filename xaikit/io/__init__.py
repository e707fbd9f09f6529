"""Medical image I/O: DICOM (pydicom), NIfTI (nibabel), PNG/JPEG/TIFF and ``.npy`` into :class:`MedicalImage`.

``read_image(path)`` picks the reader from the extension (or the content); the writers
(``write_dicom``, ``write_nifti``, ``write_png``) are atomic; ``deidentify`` writes a DICOM copy under
the PS3.15 basic de-identification profile.
"""
from .dicom import read_dicom
from .image import MedicalImage
from .nifti import nifti_bytes, read_nifti, write_nifti
from .privacy import deidentify
from .raster import read_npy, read_raster, write_png
from .reader import SUPPORTED_EXTENSIONS, image_format, read_image
from .secondary_capture import write_dicom
from .volume import read_dicom_series, read_volume, write_dicom_series, write_map_nifti

__all__ = [
    "MedicalImage",
    "read_image",
    "image_format",
    "SUPPORTED_EXTENSIONS",
    "read_dicom",
    "read_nifti",
    "read_raster",
    "read_npy",
    "write_dicom",
    "write_nifti",
    "nifti_bytes",
    "write_png",
    "deidentify",
    "read_volume",
    "read_dicom_series",
    "write_dicom_series",
    "write_map_nifti",
]
