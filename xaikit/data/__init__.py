"""Datasets: manifests, Preprocess, augmentation, patient-level splits (loaders and audit: see submodules)."""
from .augment import Augment
from .manifest import ManifestDataset, read_manifest, write_manifest
from .preprocess import Preprocess
from .splits import class_weights, patient_leaks, patient_split, weighted_sampler

__all__ = ["Augment", "ManifestDataset", "read_manifest", "write_manifest", "Preprocess", "class_weights",
           "patient_leaks", "patient_split", "weighted_sampler"]
