"""Medical image I/O: DICOM (pydicom), NIfTI (nibabel), PNG/JPEG/TIFF and ``.npy`` into :class:`MedicalImage`."""
from .image import MedicalImage

__all__ = ["MedicalImage"]
