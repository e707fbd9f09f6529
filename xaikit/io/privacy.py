"""Patient privacy for DICOM: which attributes may leave a file, and a de-identified copy.

The rules follow the DICOM Basic Application Level Confidentiality Profile, DICOM PS3.15 Annex E,
Table E.1-1 ("Application Level Confidentiality Profile Attributes"). :data:`PROFILE_ACTIONS` lists, by
pydicom keyword, the attributes of that table that occur in imaging files, each with the action of the
basic profile:

* ``"X"`` remove, ``"Z"`` replace by an empty value, ``"D"`` replace by a dummy value,
  ``"U"`` replace a UID by a new one, consistently (same input UID -> same output UID).
* The table's conditional actions are resolved towards a valid file: ``X/Z``, ``X/Z/D``, ``Z/D`` -> ``Z``;
  ``X/D`` -> ``D``; ``X/Z/U*`` (reference sequences) -> kept, with the UIDs inside replaced.

Beyond the table, as the profile also requires: private attributes are removed, overlay data and
curve data (groups 60xx/50xx) are removed, and any remaining person name (VR PN) is emptied.

:func:`dicom_meta` builds :attr:`MedicalImage.meta` from an allow-list (:data:`SAFE_KEYWORDS`) that shares
no attribute with the profile, so a read image carries no identifier unless asked.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from .._util import atomic_path
from ..errors import ImageReadError, ImageWriteError
from ._common import existing_file

__all__ = ["PROFILE_ACTIONS", "SAFE_KEYWORDS", "IDENTIFIER_KEYWORDS", "PATIENT_CHARACTERISTICS",
           "dicom_meta", "deidentify"]

_REMOVE = """
AcquisitionComments AcquisitionProtocolDescription ActualHumanPerformersSequence AdditionalPatientHistory
AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AdmittingTime
Allergies Arbitrary AuthorObserverSequence BranchOfService CassetteID CommentsOnRadiationDose
CommentsOnThePerformedProcedureStep ConfidentialityConstraintOnPatientDataDescription
ConsultingPhysicianIdentificationSequence ContrastBolusStartTime ContrastBolusStopTime CountryOfResidence
CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence DataSetTrailingPadding
DateOfLastCalibration DateOfSecondaryCapture DerivationDescription DigitalSignaturesSequence DischargeDate
DischargeDiagnosisDescription DischargeTime DistributionAddress DistributionName EthnicGroup FrameComments
GantryID GeneratorID HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions InstitutionAddress
InstitutionalDepartmentName InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription InterpretationIDIssuer
InterpretationRecorder InterpretationText InterpretationTranscriber IssueDateOfImagingServiceRequest
IssueTimeOfImagingServiceRequest IssuerOfAdmissionID IssuerOfPatientID IssuerOfServiceEpisodeID
LastMenstrualDate MedicalAlerts MedicalRecordLocator MilitaryRank ModifiedAttributesSequence
ModifiedImageDescription ModifyingDeviceID NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults
NetworkID Occupation OrderCallbackPhoneNumber OrderEnteredBy OrderEntererLocation OriginalAttributesSequence
OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime ParticipantSequence PatientAddress PatientAge
PatientBirthName PatientBirthTime PatientComments PatientInstitutionResidence PatientInsurancePlanCodeSequence
PatientMotherBirthName PatientPrimaryLanguageCodeSequence PatientReligiousPreference PatientSize PatientState
PatientTelephoneNumbers PatientTransportArrangements PatientWeight PerformedLocation
PerformedProcedureStepDescription PerformedProcedureStepEndDate PerformedProcedureStepEndTime
PerformedProcedureStepID PerformedProcedureStepStartDate PerformedProcedureStepStartTime
PerformedStationAETitle PerformedStationGeographicLocationCodeSequence PerformedStationName
PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence PerformingPhysicianName
PersonAddress PersonTelephoneNumbers PhysicianApprovingInterpretation
PhysiciansReadingStudyIdentificationSequence PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
PlateID PreMedication PregnancyStatus ReasonForStudy ReasonForTheImagingServiceRequest
ReasonForTheRequestedProcedure ReferencedPatientAliasSequence ReferencedPatientPhotoSequence
ReferencedPatientSequence ReferringPhysicianAddress ReferringPhysicianIdentificationSequence
ReferringPhysicianTelephoneNumbers RegionOfResidence RequestAttributesSequence RequestedContrastAgent
RequestedProcedureComments RequestedProcedureID RequestedProcedureLocation RequestingPhysician
RequestingService ResponsibleOrganization ResponsiblePerson ResultsComments ResultsDistributionListSequence
ResultsIDIssuer RetrieveAETitle ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
ScheduledPerformingPhysicianIdentificationSequence ScheduledPerformingPhysicianName
ScheduledProcedureStepDescription ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime
ScheduledProcedureStepID ScheduledProcedureStepLocation ScheduledProcedureStepStartDate
ScheduledProcedureStepStartTime ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence
ScheduledStationName ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
ScheduledStudyStartDate ScheduledStudyStartTime SeriesDescription ServiceEpisodeDescription ServiceEpisodeID
SmokingStatus SpecialNeeds StationAETitle StudyArrivalDate StudyArrivalTime StudyComments
StudyCompletionDate StudyCompletionTime StudyDescription StudyIDIssuer StudyReadDate StudyReadTime
StudyVerifiedDate StudyVerifiedTime TextComments TextString TimeOfLastCalibration TimeOfSecondaryCapture
TimezoneOffsetFromUTC TopicAuthor TopicKeywords TopicSubject TopicTitle UniqueDeviceIdentifier VisitComments
OtherPatientIDs
"""
_EMPTY = """
AccessionNumber ConsultingPhysicianName FillerOrderNumberImagingServiceRequest PatientBirthDate PatientName
PatientSex PlacerOrderNumberImagingServiceRequest ReferringPhysicianName StudyDate StudyID StudyTime
VerifyingObserverIdentificationCodeSequence
ContentCreatorName ContentDate ContentTime ContrastBolusAgent PatientID
AcquisitionContextSequence AcquisitionDate AcquisitionTime PatientSexNeutered ReferencedStudySequence
RequestedProcedureDescription
AcquisitionDateTime DeviceSerialNumber InstanceCreationTime InstitutionCodeSequence InstitutionName
OperatorsName ReferencedPerformedProcedureStepSequence StationName
"""
_DUMMY = """
ClinicalTrialSponsorName ClinicalTrialProtocolID ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
ContentSequence GraphicAnnotationSequence PersonName VerifyingObserverName VerifyingObserverSequence
VerifyingOrganization
AcquisitionDeviceProcessingDescription DateOfLastDetectorCalibration DetectorID InstanceCreationDate
OperatorIdentificationSequence ProtocolName SeriesDate SeriesTime TimeOfLastDetectorCalibration
"""
_NEW_UID = """
ConcatenationUID DeviceUID DimensionOrganizationUID DoseReferenceUID FiducialUID FrameOfReferenceUID
InstanceCreatorUID IrradiationEventUID LargePaletteColorLookupTableUID MediaStorageSOPInstanceUID
ObservationUID PaletteColorLookupTableUID ReferencedDoseReferenceUID ReferencedFrameOfReferenceUID
ReferencedSOPInstanceUID ReferencedSOPInstanceUIDInFile RelatedFrameOfReferenceUID SOPInstanceUID
SeriesInstanceUID SpecimenUID StorageMediaFileSetUID StudyInstanceUID SynchronizationFrameOfReferenceUID
TargetUID TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TrackingUID TransactionUID UID
"""


def _table(**groups: str) -> dict[str, str]:
    return {kw: action for action, words in groups.items() for kw in words.split()}


#: pydicom keyword -> basic-profile action (``"X"``, ``"Z"``, ``"D"``, ``"U"``), from PS3.15 Table E.1-1.
PROFILE_ACTIONS: dict[str, str] = _table(X=_REMOVE, Z=_EMPTY, D=_DUMMY, U=_NEW_UID)

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
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise ImageReadError(f"{src}: cannot be read as DICOM ({exc}); nothing was written.") from exc
    keep = set(PATIENT_CHARACTERISTICS) if keep_patient_characteristics else set()
    salt = _SESSION_SALT if uid_salt is None else uid_salt
    ds.remove_private_tags()
    _clean(ds, keep, salt)
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
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
    return dst


def _clean(ds: Dataset, keep: set[str], salt: str) -> None:
    """Apply the profile to ``ds`` and, recursively, to every sequence item in it."""
    for element in list(ds):
        keyword, group = element.keyword, element.tag.group
        action = "K" if keyword in keep else PROFILE_ACTIONS.get(keyword)
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
_DUMMIES = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS", "SQ": None}


def _dummy(vr: str) -> Any:
    if vr == "SQ":
        return Sequence()
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
