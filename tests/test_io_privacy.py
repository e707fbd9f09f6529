"""Privacy: MedicalImage.meta carries no identifiers by default; deidentify() follows PS3.15 E.1-1."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from xaikit._util import sha256_file
from xaikit.errors import ImageReadError
from xaikit.io import deidentify, read_image
from xaikit.io.privacy import IDENTIFIER_KEYWORDS, PATIENT_CHARACTERISTICS, PROFILE_ACTIONS, SAFE_KEYWORDS

CT = get_testdata_file("CT_small.dcm")
SECRETS = ("CompressedSamples^CT1", "1CT1", "JFK IMAGING CENTER")  # name, ID, institution in CT_small.dcm


def _all_text(ds: Dataset) -> str:
    parts = []
    for element in ds.iterall():
        if element.VR not in ("OB", "OW", "SQ", "UN"):
            parts.append(str(element.value))
    return "\n".join(parts)


def test_profile_table_is_valid_and_disjoint_from_meta_allow_list():
    assert len(PROFILE_ACTIONS) > 250 and set(PROFILE_ACTIONS.values()) == {"X", "Z", "D", "U"}
    for keyword in (*PROFILE_ACTIONS, *SAFE_KEYWORDS, *IDENTIFIER_KEYWORDS, *PATIENT_CHARACTERISTICS):
        assert tag_for_keyword(keyword) is not None, keyword
    assert not set(SAFE_KEYWORDS) & set(PROFILE_ACTIONS)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "InstitutionName",
                    "StudyInstanceUID", "SOPInstanceUID", "AccessionNumber", "ReferringPhysicianName"):
        assert keyword in PROFILE_ACTIONS


def test_meta_holds_no_identifiers_unless_asked():
    source = pydicom.dcmread(CT)
    assert str(source.PatientName) == SECRETS[0] and source.PatientID == SECRETS[1]
    img = read_image(CT)
    text = repr(img.meta)
    assert not any(secret in text for secret in SECRETS)
    assert str(source.StudyInstanceUID) not in text and str(source.StudyDate) not in text
    assert img.meta["Modality"] == "CT" and img.meta["Rows"] == 128
    kept = read_image(CT, keep_identifiers=True)
    assert kept.meta["PatientID"] == SECRETS[1] and kept.meta["PatientName"] == SECRETS[0]


def test_deidentify_removes_identifiers_and_keeps_pixels(tmp_path):
    before = sha256_file(CT)
    out = deidentify(CT, tmp_path / "anon.dcm", uid_salt="s")
    assert sha256_file(CT) == before  # the source is untouched
    src, ds = pydicom.dcmread(CT), pydicom.dcmread(out)
    text = _all_text(ds)
    assert not any(secret in text for secret in SECRETS)
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.PatientName == "" and ds.PatientID == "" and ds.StudyDate == ""
    assert not any(element.tag.is_private for element in ds.iterall())
    assert all(not element.value for element in ds.iterall() if element.VR == "PN")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert ds[keyword].value != src[keyword].value
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(ds.pixel_array, src.pixel_array)
    assert np.array_equal(read_image(out).array, read_image(CT).array)


def test_uid_replacement_is_consistent_and_salted(tmp_path):
    a = pydicom.dcmread(deidentify(CT, tmp_path / "a.dcm", uid_salt="project-1"))
    b = pydicom.dcmread(deidentify(CT, tmp_path / "b.dcm", uid_salt="project-1"))
    c = pydicom.dcmread(deidentify(CT, tmp_path / "c.dcm", uid_salt="project-2"))
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID == b.SOPInstanceUID
    assert a.StudyInstanceUID != c.StudyInstanceUID
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()


def test_nested_references_follow_the_new_uids(tmp_path):
    source = pydicom.dcmread(CT)
    referring = pydicom.dcmread(CT)
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.add_new("PerformingPhysicianName", "PN", "Doe^Jane")
    referring.ReferencedImageSequence = Sequence([item])
    referring.SOPInstanceUID = pydicom.uid.generate_uid()
    referring.save_as(tmp_path / "ref.dcm")
    anon_source = pydicom.dcmread(deidentify(CT, tmp_path / "s.dcm", uid_salt="k"))
    anon_ref = pydicom.dcmread(deidentify(tmp_path / "ref.dcm", tmp_path / "r.dcm", uid_salt="k"))
    nested = anon_ref.ReferencedImageSequence[0]
    assert nested.ReferencedSOPInstanceUID == anon_source.SOPInstanceUID
    assert "PerformingPhysicianName" not in nested


def test_pseudonym_and_patient_characteristics(tmp_path):
    src = pydicom.dcmread(CT)
    src.PatientSex, src.PatientAge = "F", "042Y"
    src.save_as(tmp_path / "in.dcm")
    plain = pydicom.dcmread(deidentify(tmp_path / "in.dcm", tmp_path / "p.dcm", patient_pseudonym="P0007"))
    assert plain.PatientID == "P0007" and str(plain.PatientName) == "P0007"
    assert plain.PatientSex == "" and "PatientAge" not in plain
    kept = pydicom.dcmread(deidentify(tmp_path / "in.dcm", tmp_path / "k.dcm", keep_patient_characteristics=True))
    assert kept.PatientSex == "F" and kept.PatientAge == "042Y"
    assert [c.CodeValue for c in kept.DeidentificationMethodCodeSequence] == ["113100", "113108"]


def test_burned_in_annotation_warns(tmp_path):
    src = pydicom.dcmread(CT)
    src.BurnedInAnnotation = "YES"
    src.save_as(tmp_path / "burned.dcm")
    with pytest.warns(UserWarning, match="BurnedInAnnotation"):
        deidentify(tmp_path / "burned.dcm", tmp_path / "out.dcm")


def test_deidentify_in_place_and_bad_input(tmp_path):
    path = tmp_path / "same.dcm"
    shutil.copy(CT, path)
    deidentify(path, path)
    assert pydicom.dcmread(path).PatientIdentityRemoved == "YES"
    (tmp_path / "fake.dcm").write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ImageReadError, match="fake.dcm"):
        deidentify(tmp_path / "fake.dcm", tmp_path / "never.dcm")
    assert not (tmp_path / "never.dcm").exists()
