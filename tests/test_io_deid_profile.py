"""deidentify() against the whole PS3.15 Table E.1-1: crafted files carrying every listed attribute, and every
pydicom test file."""
from __future__ import annotations

import os
import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, UID_dictionary

from xaikit.errors import ImageReadError
from xaikit.io import deidentify
from xaikit.io.privacy import PATIENT_CHARACTERISTICS, PROFILE_TAGS

SECRET = "SECRET"
# Rows of the table a data set in a file can hold (command elements 0000,xxxx and file meta 0002,xxxx cannot).
FILE_TAGS = {tag: action for tag, action in PROFILE_TAGS.items() if tag >> 16 not in (0x0000, 0x0002)}
# Named in issue 15 as kept by the old hand-written list; several are missing from the table's transcription
# and are caught by the catch-alls (patient group, issuers, order numbers, alternative calendars, UIDs).
ISSUE_ATTRIBUTES = ("PatientTelecomInformation", "PatientBirthDateInAlternativeCalendar",
                    "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar", "IssuerOfPatientID",
                    "IssuerOfPatientIDQualifiersSequence", "IssuerOfAccessionNumberSequence",
                    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
                    "OrderPlacerIdentifierSequence", "OrderFillerIdentifierSequence",
                    "SOPInstanceUIDOfConcatenationSource")


def _secret_value(vr: str, n: int):
    if vr == "SQ":
        item = Dataset()
        item.PatientName = f"{SECRET}^Nested"
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.99.{n}.1"
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        return Sequence([item])
    values = {"PN": f"{SECRET}^Name{n}", "DA": "20010203", "TM": "040506", "DT": "20010203040506",
              "UI": f"1.2.826.0.1.3680043.99.{n}", "AS": "042Y", "DS": "1.5", "IS": "7", "CS": SECRET,
              "AE": SECRET, "US": 7, "SS": 7, "UL": 7, "SL": 7, "FL": 7.0, "FD": 7.0, "SV": 7, "UV": 7,
              "OB": SECRET.encode() * 2, "OW": SECRET.encode() * 2, "UN": SECRET.encode() * 2,
              "AT": Tag(0x0010, 0x0010), "UR": f"http://{SECRET}.example"}
    return values.get(vr, f"{SECRET} value {n}")


def _crafted(path, keywords_only: bool = False) -> dict[int, object]:
    """A CT-like file carrying every attribute of the table (and the issue's list) with a secret value."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.0"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    sources = {}
    tags = [t for t in FILE_TAGS] + [Tag(kw) for kw in ISSUE_ATTRIBUTES]
    for n, tag in enumerate(tags, start=1):
        try:
            vr = dictionary_VR(tag)
        except KeyError:   # newer than pydicom's dictionary: stored as LO
            vr = "LO"
        vr = vr.split(" or ")[0]
        ds.add_new(tag, vr, _secret_value(vr, n))
        sources[int(tag)] = ds[tag].value
    ds.save_as(path, enforce_file_format=True)
    return sources


def _text(ds: Dataset) -> str:
    out = []
    for element in ds.iterall():
        value = element.value
        out.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return "\n".join(out)


def _instance_uids(ds: Dataset) -> set[str]:
    uids = set()
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, list) else [element.value]
            uids |= {str(v) for v in values if str(v) not in UID_dictionary}
    return uids


def _assert_basic_profile(src: Dataset, out: Dataset) -> None:
    """Invariants of the profile that hold for any input."""
    for element in out.iterall():
        assert not element.tag.is_private, element
        if element.VR == "PN":
            assert str(element.value) in ("", "None", "ANONYMOUS"), element   # emptied or the dummy name
        assert PROFILE_TAGS.get(int(element.tag)) != "X", element
    assert not _instance_uids(src) & _instance_uids(out)   # every instance UID replaced, everywhere
    assert out.PatientIdentityRemoved == "YES"


def test_every_table_attribute_gets_its_action(tmp_path):
    sources = _crafted(tmp_path / "all.dcm")
    assert len(sources) >= 600
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pydicom.dcmread(deidentify(tmp_path / "all.dcm", tmp_path / "anon.dcm", uid_salt="k"))
    src = pydicom.dcmread(tmp_path / "all.dcm")
    _assert_basic_profile(src, out)
    assert SECRET.lower() not in _text(out).lower()
    for tag, action in FILE_TAGS.items():
        name = keyword_for_tag(tag) or hex(tag)
        if action == "X":
            assert tag not in out, name
        elif action == "Z":
            assert tag in out and not out[tag].value, name
        elif action == "D":
            assert tag in out and out[tag].value != sources[tag], name
        elif action == "U":
            assert tag in out and out[tag].value != sources[tag] and pydicom.uid.UID(out[tag].value).is_valid, name
        else:   # U*: reference sequence kept, its items cleaned and their UIDs replaced
            item = out[tag].value[0]
            assert not item.PatientName and item.ReferencedSOPInstanceUID != sources[tag][0].ReferencedSOPInstanceUID
            assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2", name   # registered UIDs stay
    for keyword in ISSUE_ATTRIBUTES:
        element = out[keyword] if keyword in out else None
        assert element is None or not element.value or element.value != src[keyword].value, keyword
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != src.SOPInstanceUID
    assert out.SOPClassUID == src.SOPClassUID


def test_patient_characteristics_option_keeps_exactly_those(tmp_path):
    _crafted(tmp_path / "all.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pydicom.dcmread(deidentify(tmp_path / "all.dcm", tmp_path / "k.dcm", keep_patient_characteristics=True))
    src = pydicom.dcmread(tmp_path / "all.dcm")
    for keyword in PATIENT_CHARACTERISTICS:
        assert out[keyword].value == src[keyword].value, keyword
    assert "PatientBirthDateInAlternativeCalendar" not in out and not out.PatientName


def _pydicom_files() -> list[str]:
    return sorted(p for p in get_testdata_files() if os.path.isfile(p))


@pytest.mark.parametrize("path", _pydicom_files(), ids=lambda p: p.split("test_files/")[-1])
def test_every_pydicom_test_file(tmp_path, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            src = pydicom.dcmread(path)
        except Exception:   # not DICOM (json, txt, icc, broken on purpose): deidentify must say so, naming it
            with pytest.raises(ImageReadError, match="cannot be read as DICOM"):
                deidentify(path, tmp_path / "out.dcm")
            assert not (tmp_path / "out.dcm").exists()
            return
        out = pydicom.dcmread(deidentify(path, tmp_path / "out.dcm", uid_salt="k"))
    _assert_basic_profile(src, out)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "AccessionNumber"):
        if keyword in src and src[keyword].value:
            assert keyword not in out or out[keyword].value != src[keyword].value, keyword
