"""The chain verifier: the owner's layout, every link and rule, and the delivered files.

Example:
    >>> from chainproof.verify import verify_bundle  # doctest: +SKIP
    >>> result = verify_bundle("chainproof-work/registry/models/m/1/bundle",
    ...                        trusted_owner_keys=TrustStore(path).keys())
    >>> result.model_sha256

in-toto verifies the layout signature, the links, their signatures and the
artifact rules; it does not check the files that are finally delivered. The
verifier adds that, and it never trusts a key because the bundle carries it: the
owner key comes from the caller (a ``--owner-key`` or the local trust store).

The steps are numbered as in ``docs/verification.md``. The same code verifies a
*prefix* of the chain inside the pipeline (each step checks everything before it,
with the layout pinned by digest instead of the owner signature).

One module per group of checks, numbered as in ``docs/verification.md``:

- :mod:`chainproof.verify._types`: file names, limits, :class:`StepRecord`, :class:`VerificationResult`;
- :mod:`chainproof.verify._layout`: (1) the layout parses within its limits, (2) a trusted owner signed it;
- :mod:`chainproof.verify._links`: (3) expiry, (4) every link and its functionary signature,
  (5) materials, (6) products, (7) order;
- :mod:`chainproof.verify._evidence`: (8) the bundle's evidence is the attested evidence;
- :mod:`chainproof.verify._model`: (9) the delivered model, (10) its signature, (11) provenance,
  (12) the verification summary, (18) the SBOM;
- :mod:`chainproof.verify._identity`: (13) the identity policy;
- :mod:`chainproof.verify._bundle`: the order of them all, then (19) the model card and (14) the
  auditor's policy;
- :mod:`chainproof.verify._registry`: (0), (15), (16), (17) around a registered version.
"""

from __future__ import annotations

from chainproof.verify._bundle import annotate_failure, verify_bundle, verify_pinned_chain
from chainproof.verify._evidence import (
    bundled_files,
    check_artifacts,
    products_with_prefix,
    read_bundle_index,
    verify_bundled_evidence,
)
from chainproof.verify._identity import check_identity_policy
from chainproof.verify._layout import load_layout, verify_layout_signature
from chainproof.verify._links import verify_chain_links
from chainproof.verify._model import verify_model_evidence
from chainproof.verify._registry import check_registry_binding, verify_registered
from chainproof.verify._types import (
    BUNDLE_INDEX,
    BUNDLED_PREFIXES,
    CARD_PRODUCT,
    KEYS_DIR,
    LAYOUT_FILE,
    LINKS_DIR,
    SLSA_PROVENANCE,
    SLSA_VSA,
    StepRecord,
    VerificationResult,
    VerifyOptions,
)

__all__ = [
    "BUNDLED_PREFIXES",
    "BUNDLE_INDEX",
    "CARD_PRODUCT",
    "KEYS_DIR",
    "LAYOUT_FILE",
    "LINKS_DIR",
    "SLSA_PROVENANCE",
    "SLSA_VSA",
    "StepRecord",
    "VerificationResult",
    "VerifyOptions",
    "annotate_failure",
    "bundled_files",
    "check_artifacts",
    "check_identity_policy",
    "check_registry_binding",
    "load_layout",
    "products_with_prefix",
    "read_bundle_index",
    "verify_bundle",
    "verify_bundled_evidence",
    "verify_chain_links",
    "verify_layout_signature",
    "verify_model_evidence",
    "verify_pinned_chain",
    "verify_registered",
]
