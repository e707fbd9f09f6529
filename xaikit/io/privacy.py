"""Patient privacy for DICOM: which attributes may leave a file, and a de-identified copy.

The rules follow the DICOM Basic Application Level Confidentiality Profile, DICOM PS3.15 Annex E,
Table E.1-1 ("Application Level Confidentiality Profile Attributes"), in full: the table is not copied by
hand but taken from Kitware's ``dicom-anonymizer`` package (its transcription of the standard's table,
edition 2026c, ``dicomanonymizer.dicom_anonymization_databases``; :data:`PROFILE_EDITION`).
:data:`PROFILE_TAGS` maps every tag of that table to the action of the basic profile, and
:data:`PROFILE_ACTIONS` the same by pydicom keyword (tags newer than pydicom's dictionary have none):

* ``"X"`` remove, ``"Z"`` replace by an empty value, ``"D"`` replace by a dummy value,
  ``"U"`` replace a UID by a new one, consistently (same input UID -> same output UID).
* The table's conditional actions are resolved towards a valid file: ``X/Z``, ``X/Z/D``, ``Z/D`` -> ``Z``;
  ``X/D`` -> ``D``; ``X/Z/U*`` (reference sequences) -> kept, with the UIDs inside replaced.

Beyond the table, as the profile also requires: private attributes are removed, overlay data and
curve data (groups 60xx/50xx) are removed, and any remaining person name (VR PN) is emptied. And, to be
safe where a transcription or an older/newer edition of the table misses an attribute (e.g. the
alternative-calendar birth/death dates, Issuer of Patient ID Qualifiers, SOP Instance UID of Concatenation
Source), three catch-alls apply to attributes the table does not name: every other attribute of the
Patient group (0010,xxxx) is removed unless it is a kept patient characteristic; every attribute whose
keyword names an issuer, an address, a telephone/telecom, an order number or an alternative calendar is
removed; and every UID (VR UI) that is not a registered DICOM UID (SOP classes, transfer syntaxes, coding
schemes) is replaced like an instance UID.

:func:`dicom_meta` builds :attr:`MedicalImage.meta` from an allow-list (:data:`SAFE_KEYWORDS`) that shares
no attribute with the profile, so a read image carries no identifier unless asked.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary, generate_uid

from .._util import atomic_path
from ..errors import ImageReadError, ImageWriteError
from ._common import existing_file

__all__ = ["PROFILE_ACTIONS", "PROFILE_TAGS", "PROFILE_EDITION", "SAFE_KEYWORDS", "IDENTIFIER_KEYWORDS",
           "PATIENT_CHARACTERISTICS", "dicom_meta", "deidentify"]

#: Edition of PS3.15 Table E.1-1 used, as named by dicom-anonymizer's database module.
PROFILE_EDITION = "dicomfields_2026c"

# dicom-anonymizer's categories -> the basic profile's action, conditional actions resolved towards a valid
# file (see the module docstring); "U*" (X/Z/U*: reference sequences) keeps the sequence and cleans its items.
_CATEGORY_ACTION = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z", "X_Z_TAGS": "Z",
                    "X_D_TAGS": "D", "X_Z_D_TAGS": "Z", "X_Z_U_STAR_TAGS": "U*"}


def _profile_tags() -> dict[int, str]:
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    database = dicom_anonymization_database_selector(PROFILE_EDITION)
    out: dict[int, str] = {}
    for category, action in _CATEGORY_ACTION.items():
        for entry in database[category]:
            if len(entry) == 2:  # the masked entries (curves 50xx, overlays 60xx) are handled by group below
                out[(entry[0] << 16) | entry[1]] = action
    return out


#: Tag (int) -> basic-profile action (``"X"``, ``"Z"``, ``"D"``, ``"U"``, ``"U*"``), every row of Table E.1-1.
PROFILE_TAGS: dict[int, str] = _profile_tags()

#: pydicom keyword -> action (``"X"``, ``"Z"``, ``"D"``, ``"U"``) for the rows of :data:`PROFILE_TAGS` that
#: pydicom's dictionary names and that are not reference sequences.
PROFILE_ACTIONS: dict[str, str] = {keyword_for_tag(tag): action for tag, action in PROFILE_TAGS.items()
                                   if keyword_for_tag(tag) and action != "U*"}

# Catch-alls for attributes the table does not name (module docstring).
_PATIENT_GROUP = 0x0010
_IDENTIFYING_WORDS = ("Issuer", "Address", "Telephone", "Telecom", "OrderNumber", "AlternativeCalendar")

#: Table E.1-1, "Retain Patient Characteristics Option": kept when ``keep_patient_characteristics=True``.
PATIENT_CHARACTERISTICS = ("PatientAge", "PatientSex", "PatientSize", "PatientWeight", "EthnicGroup",
                           "PregnancyStatus", "SmokingStatus", "PatientSexNeutered")

#: Attributes :func:`dicom_meta` may copy into ``MedicalImage.meta``: acquisition and pixel facts, none in
#: Table E.1-1 (a test checks the two sets are disjoint).
SAFE_KEYWORDS = (
    "Modality", "SOPClassUID", "Manufacturer", "ManufacturerModelName", "BodyPartExamined", "ViewPosition",
    "ImageLaterality", "Laterality", "PatientOrientation", "PatientPosition", "ImageType",
    "PresentationIntentType", "PhotometricInterpretation", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope",
    "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction", "PixelSpacing",
    "ImagerPixelSpacing", "SliceThickness", "SpacingBetweenSlices", "ImageOrientationPatient",
    "ImagePositionPatient", "KVP", "ExposureTime", "XRayTubeCurrent", "Exposure", "ConvolutionKernel",
    "MagneticFieldStrength", "EchoTime", "RepetitionTime", "BurnedInAnnotation", "LossyImageCompression",
    "PatientIdentityRemoved", "DeidentificationMethod",
)

#: Identifying attributes added to ``meta`` only with ``keep_identifiers=True``.
IDENTIFIER_KEYWORDS = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge", "AccessionNumber", "StudyID",
    "StudyDate", "StudyTime", "SeriesDate", "AcquisitionDate", "StudyDescription", "SeriesDescription",
    "InstitutionName", "ReferringPhysicianName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
)

# One secret per Python process: UIDs replaced in one session map consistently across files,
# yet cannot be recomputed from the original UID by someone without it. Pass uid_salt to persist.
_SESSION_SALT = os.urandom(16).hex()


def _plain(value: Any) -> Any:
    """A DICOM value as plain Python (str, int, float or list of them) for ``meta``."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return str(value)


def dicom_meta(ds: Dataset, *, keep_identifiers: bool = False) -> dict[str, Any]:
    """Non-identifying metadata of ``ds`` (keys are pydicom keywords, values plain Python).

    Only :data:`SAFE_KEYWORDS` are copied; with ``keep_identifiers=True`` also :data:`IDENTIFIER_KEYWORDS`.
    Sequences are never copied.
    """
    keywords = SAFE_KEYWORDS + (IDENTIFIER_KEYWORDS if keep_identifiers else ())
    meta: dict[str, Any] = {}
    for keyword in keywords:
        element = ds.get(keyword)
        if element is not None and element != "" and not isinstance(element, Sequence):
            meta[keyword] = _plain(element)
    return meta


def deidentify(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    patient_pseudonym: str | None = None,
    uid_salt: str | None = None,
    keep_patient_characteristics: bool = False,
) -> Path:
    """Write a de-identified copy of a DICOM file (PS3.15 basic profile), atomically.

    Parameters
    ----------
    src, dst : str or os.PathLike
        The DICOM file to read and the copy to write (``dst`` may equal ``src``).
    patient_pseudonym : str, optional
        Written as PatientID and PatientName (both are emptied otherwise). Keep the key linking
        pseudonyms to patients outside the data.
    uid_salt : str, optional
        Secret mixed into the UID replacement. Files de-identified with the same salt (or in the same
        Python session when no salt is given) keep their study/series/frame-of-reference links.
    keep_patient_characteristics : bool
        Keep age, sex, size, weight... (the profile's "Retain Patient Characteristics Option").

    Returns
    -------
    pathlib.Path
        ``dst``. The copy has PatientIdentityRemoved = ``YES`` and DeidentificationMethod(CodeSequence)
        set. Pixel data are copied as is: a warning is given when BurnedInAnnotation is ``YES``.
    """
    src = existing_file(src)
    try:
        ds = pydicom.dcmread(src)
        for _ in ds.iterall():  # convert every element now: pydicom parses lazily (see dicom.convert_all)
            pass
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            NotImplementedError, IndexError, struct.error) as exc:
        raise ImageReadError(f"{src}: cannot be read as DICOM ({exc}); nothing was written.") from exc
    keep = set(PATIENT_CHARACTERISTICS) if keep_patient_characteristics else set()
    salt = _SESSION_SALT if uid_salt is None else uid_salt
    ds.remove_private_tags()
    _clean(ds, keep, salt)
    _clean_file_meta(ds, salt)
    if patient_pseudonym is not None:
        ds.PatientID = patient_pseudonym
        ds.PatientName = patient_pseudonym
    _mark_deidentified(ds, keep_patient_characteristics)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.warn(f"{src}: BurnedInAnnotation is YES: the pixels may show identifying text, which "
                      "deidentify() does not remove. Check the images before sharing.", stacklevel=2)
    dst = Path(dst)
    try:
        with atomic_path(dst) as tmp:
            ds.save_as(tmp)
    except OSError as exc:
        raise ImageWriteError(f"{dst}: could not write the de-identified copy ({exc}).") from exc
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError, struct.error) as exc:
        # a value (or file meta) of the source pydicom cannot encode again (found by tests/test_fuzz_readers.py)
        raise ImageWriteError(f"{dst}: the de-identified copy of {src} cannot be encoded as DICOM "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]}); nothing was written. Repair "
                              "the source file (e.g. dcmtk's dcmodify) and try again.") from exc
    return dst


def _clean_file_meta(ds: Dataset, salt: str) -> None:
    """The file meta's Media Storage SOP Instance UID follows the (new) SOP Instance UID; without one in the
    data set it is replaced on its own. The source application's AE title may name a hospital: removed."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    if "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = (ds.SOPInstanceUID if "SOPInstanceUID" in ds
                                           else _new_uid(str(meta.MediaStorageSOPInstanceUID), salt))
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                    "ReceivingApplicationEntityTitle"):
        if keyword in meta:
            del meta[keyword]


def _action(element: pydicom.DataElement, keep: set[str]) -> str | None:
    """The profile's action for ``element``: the table's, else a catch-all's, else None (kept as is)."""
    keyword, tag = element.keyword, int(element.tag)
    if keyword in keep:
        return "K"
    action = PROFILE_TAGS.get(tag)
    if action is not None:
        return action
    if element.tag.group == _PATIENT_GROUP or any(word in keyword for word in _IDENTIFYING_WORDS):
        return "X"
    if element.VR == "UI" and element.value and not _registered(element.value):
        return "U"
    return None


def _registered(value: Any) -> bool:
    values = value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
    return all(str(v) in UID_dictionary for v in values)


def _clean(ds: Dataset, keep: set[str], salt: str) -> None:
    """Apply the profile to ``ds`` and, recursively, to every sequence item in it."""
    for element in list(ds):
        group = element.tag.group
        action = _action(element, keep)
        if action == "X" or (group & 0xFF00) == 0x5000 or ((group & 0xFF00) == 0x6000 and
                                                            element.tag.element in (0x3000, 0x4000)):
            del ds[element.tag]
        elif action == "Z" or (action is None and element.VR == "PN"):
            element.value = Sequence() if element.VR == "SQ" else (None if element.VR in _NUMERIC_VRS else "")
        elif action == "D":
            element.value = _dummy(element.VR)
        elif action == "U" and element.value:
            element.value = _new_uids(element.value, salt)
        elif element.VR == "SQ":
            for item in element.value:
                _clean(item, keep, salt)


_NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "OB", "OW", "OF", "OD", "OL", "OV", "AT"}
# A dummy value valid for each VR (PS3.5 6.2): an age, a number or a UID must still parse as one.
_DUMMIES = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS", "AS": "000Y",
            "DS": "0", "IS": "0", "UI": "2.25.0"}
_BYTES_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def _dummy(vr: str) -> Any:
    if vr == "SQ":
        return Sequence()
    if vr in _BYTES_VRS:
        return b""
    if vr in _NUMERIC_VRS:
        return None
    return _DUMMIES.get(vr, "ANONYMIZED")


def _new_uids(value: Any, salt: str) -> Any:
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [_new_uid(str(v), salt) for v in value]
    return _new_uid(str(value), salt)


def _new_uid(old: str, salt: str) -> str:
    """The replacement of ``old``: a hash of salt and UID under pydicom's root, the same for the same input."""
    return str(generate_uid(entropy_srcs=[f"{salt}|{old}"]))


def _mark_deidentified(ds: Dataset, retain_characteristics: bool) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "xaikit: DICOM PS3.15 E.1-1 basic profile"
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if retain_characteristics:
        codes.append(("113108", "Retain Patient Characteristics Option"))
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
