"""Kubernetes: hardened serving manifests and an offline Pod Security Standards check."""

from chainproof.k8s.manifests import Finding, ManifestOptions, check_documents, render_manifests
from chainproof.k8s.pss import Violation, check_pod

__all__ = ["Finding", "ManifestOptions", "Violation", "check_documents", "check_pod", "render_manifests"]
