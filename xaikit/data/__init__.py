"""Datasets: manifests, loaders for downloaded layouts, Preprocess, augmentation, patient-level splits, audit."""
from .audit import AUDIT_COLUMNS, FEATURES, AuditTable, audit, image_features
from .augment import Augment
from .batch import SampleBatch, balanced_batch
from .loaders import LOADERS, from_class_folders, from_medmnist, from_rsna, kermany_patient
from .manifest import ManifestDataset, read_manifest, write_manifest
from .preprocess import Preprocess
from .splits import class_weights, patient_leaks, patient_split, weighted_sampler
from .volume import VolumePreprocess, preprocess_from_dict

__all__ = ["Augment", "SampleBatch", "balanced_batch", "ManifestDataset", "read_manifest", "write_manifest",
           "Preprocess", "VolumePreprocess", "preprocess_from_dict", "class_weights",
           "patient_leaks", "patient_split", "weighted_sampler", "audit", "image_features", "FEATURES",
           "AUDIT_COLUMNS", "AuditTable", "LOADERS", "from_class_folders", "from_rsna", "from_medmnist",
           "kermany_patient"]
