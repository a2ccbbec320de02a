"""Checks (3)-(7): expiry, every link and its functionary signature, the artifact rules, the order."""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from in_toto import exceptions as itx
from in_toto import verifylib
from in_toto.models.layout import Layout
from in_toto.models.link import FILENAME_FORMAT, Link
from in_toto.models.metadata import Metadata

from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    LayoutError,
)
from chainproof.verify._types import (
    LAYOUT_FILE,
    LINKS_DIR,
    StepRecord,
    VerifyOptions,
    _first_line,
    _read_limited,
)

__all__ = ['verify_chain_links']


def _diagnose_rule_failure(
    step: str,
    kind: str,
    message: str,
    layout: Layout,
    links: Mapping[str, Link],
) -> tuple[str, str]:
    """Turn in-toto's DISALLOW/REQUIRE message into expected-vs-found facts and the first artifact.

    in-toto's rule errors carry only a message; its artifact list is read from it here, once.
    """
    found = re.search(r"matched the following artifacts: (\[.*?\])", message)
    if not found:
        return f"{kind}: {message}", ""
    try:
        artifacts = [str(a) for a in ast.literal_eval(found.group(1))]
    except (ValueError, SyntaxError):
        return f"{kind}: {message}", ""
    spec = next(s for s in layout.steps if s.name == step)
    rules = spec.expected_materials if kind == "materials" else spec.expected_products
    own = getattr(links[step], kind)
    facts = []
    for name in artifacts:
        reason = "not allowed by the layout"
        for rule in rules:
            if rule[0].upper() != "MATCH" or not fnmatch.fnmatch(name, rule[1]):
                continue
            src = rule[-1]
            source = links.get(src)
            if source is None:
                continue
            theirs = source.products.get(name, {}).get("sha256")
            ours = own.get(name, {}).get("sha256")
            if theirs is None:
                reason = f"not a product of {src}"
            elif theirs != ours:
                reason = f"expected sha256:{theirs} (product of {src}), got sha256:{ours}"
            break
        facts.append(f"{name}: {reason}")
    return f"{kind}: " + "; ".join(facts), (artifacts[0] if artifacts else "")


def _describe_unknown_links(step: str, link_dir: Path) -> str:
    others = sorted(p.name for p in link_dir.glob(f"{step}.*.link"))
    if not others:
        return "no link found (the step did not run, or its link was removed)"
    keyids = []
    for name in others:
        try:
            metadata = Metadata.load(str(link_dir / name))
            keyids += [s.keyid[:16] for s in getattr(metadata, "signatures", {}).values()]
        except Exception:  # noqa: BLE001 - an unreadable file is reported by name below
            keyids.append(f"unreadable {name}")
    return (
        f"no link signed by an authorized key; found {', '.join(others)} "
        f"signed by key {', '.join(keyids)}, which the layout does not authorize for this step"
    )


def _scoped_layout(layout: Layout, steps: list[Any]) -> Layout:
    return Layout(steps=steps, inspect=[], keys=layout.keys, expires=layout.expires, readme=layout.readme)


def verify_chain_links(
    layout: Layout,
    link_dir: Path,
    *,
    upto: str | None = None,
    steps: Sequence[str] | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> dict[str, StepRecord]:
    """(3)-(7) Verify the links of the layout's steps (all, or those before ``upto``).

    Uses in-toto's own verification functions on the (possibly truncated) layout:
    expiry, link loading, signature thresholds, command alignment and artifact
    rules. Rules only look back along the chain, so a prefix verifies on its own.

    Args:
        layout: the trusted layout (its signature or digest already checked).
        link_dir: the folder of ``STEP.KEYID8.link`` files.
        upto: verify only the steps before this one (``None``: every step).
        steps: with ``upto``, verify only these earlier steps (a step's ancestors in a
            pipeline whose branches run in parallel).
        options: size limits.

    Returns:
        The verified steps by name.

    Raises:
        LayoutError: the layout expired or names an unknown ``upto`` step.
        ChainError: a link is missing, forged, or breaks a rule (names the step).
    """
    names = [s.name for s in layout.steps]
    if upto is not None and upto not in names:
        raise LayoutError(f"{LAYOUT_FILE}: the layout has no step {upto!r} (steps: {names})")
    selected = layout.steps[: names.index(upto)] if upto is not None else list(layout.steps)
    if upto is not None and steps is not None:
        unknown = sorted(set(steps) - {s.name for s in selected})
        if unknown:
            raise LayoutError(f"{LAYOUT_FILE}: {', '.join(unknown)} are not steps before {upto}")
        selected = [s for s in selected if s.name in set(steps)]
    steps_ = selected
    scoped = _scoped_layout(layout, steps_)

    # (3) The layout has not expired.
    try:
        verifylib.verify_layout_expiration(scoped)
    except itx.LayoutExpiredError as exc:
        raise LayoutError(f"{LAYOUT_FILE}: layout expired on {layout.expires}") from exc

    files = sorted(link_dir.glob("*.link")) if link_dir.is_dir() else []
    if len(files) > options.max_links:
        raise ArtifactRefused(str(link_dir), f"{len(files)} links is over the limit of {options.max_links}")
    for path in files:
        _read_limited(path, options.max_metadata_bytes, str(path))

    # (4) Every step has a link signed by its authorized functionary key.
    for step in steps_:
        try:
            verifylib.load_links_for_layout(_scoped_layout(layout, [step]), str(link_dir))
        except itx.LinkNotFoundError as exc:
            raise ChainError(step.name, _describe_unknown_links(step.name, link_dir)) from exc
        except Exception as exc:  # malformed link files
            raise ChainError(step.name, f"unreadable link ({_first_line(exc)})") from exc
    # Only the links the layout's functionaries could have written may be there: a decoy
    # link signed by anyone else would otherwise ride along (and be shown in reports).
    expected = {FILENAME_FORMAT.format(step_name=step.name, keyid=keyid) for step in steps_ for keyid in step.pubkeys}
    present = sorted(p.name for p in link_dir.iterdir()) if link_dir.is_dir() else []
    for name in present:
        if name not in expected:
            scope = f" before {upto}" if upto else ""
            raise ArtifactRefused(
                f"{LINKS_DIR}/{name}", f"not the link of an authorized functionary of the layout's steps{scope}"
            )
    metadata_by_step = verifylib.load_links_for_layout(scoped, str(link_dir))
    try:
        metadata_by_step = verifylib.verify_link_signature_thresholds(scoped, metadata_by_step)
    except itx.ThresholdVerificationError as exc:
        step = re.search(r"Step '([^']+)'", str(exc))
        name = step.group(1) if step else "?"
        raise ChainError(
            name, "link signature does not verify with the step's functionary key (forged or edited link)"
        ) from exc
    # Sublayouts are not part of a chainproof chain: a layout posing as a link is refused.
    links_by_step: dict[str, dict[str, Link]] = {}
    for name, by_key in metadata_by_step.items():
        links_by_step[name] = {}
        for keyid, metadata in by_key.items():
            payload = metadata.get_payload()
            if not isinstance(payload, Link):
                raise ChainError(name, "the link file holds a layout, not a link")
            links_by_step[name][keyid] = payload
    try:
        verifylib.verify_all_steps_command_alignment(scoped, links_by_step)
        verifylib.verify_threshold_constraints(scoped, links_by_step)
    except itx.ThresholdVerificationError as exc:
        raise ChainError("?", _first_line(exc)) from exc
    reduced: dict[str, Link] = verifylib.reduce_chain_links(links_by_step)
    for name, link in reduced.items():
        if link.name != name:
            raise ChainError(name, f"link is for step {link.name!r}, not {name!r}")

    # (5)-(6) Every step's materials and products satisfy the layout's rules:
    # materials MATCH their producers' products, nothing undeclared appears.
    for step in steps_:
        for kind, rules in (("materials", step.expected_materials), ("products", step.expected_products)):
            try:
                verifylib.verify_item_rules(step.name, kind, rules, reduced)
            except itx.RuleVerificationError as exc:
                reason, artifact = _diagnose_rule_failure(step.name, kind, _first_line(exc), scoped, reduced)
                raise ChainError(
                    step.name, reason, check="5" if kind == "materials" else "6", artifact=artifact
                ) from exc

    records: dict[str, StepRecord] = {}
    # A pipeline's steps may run in parallel branches: the layout then records each
    # step's parents (a signed extension), and a step must come after each of them.
    from chainproof.policy import step_parents

    parents = step_parents(layout)
    recorded_at: dict[str, str] = {}
    previous: str | None = None
    for step in steps_:
        link = reduced[step.name]
        # (7) Steps ran in the layout's order: a link recorded before its predecessor's
        # was made out of order (or replayed), whatever its artifacts say.
        env_all = link.environment.get("chainproof", {}) if isinstance(link.environment, dict) else {}
        recorded = str(env_all.get("recorded", "")) if isinstance(env_all, dict) else ""
        before = parents.get(step.name) if parents is not None else ([previous] if previous else [])
        for earlier in before or []:
            then = recorded_at.get(earlier, "")
            if recorded and then and recorded < then:
                raise ChainError(
                    step.name,
                    f"recorded at {recorded}, before {earlier} (recorded at {then}): steps out of order",
                    check="7",
                )
        recorded_at[step.name] = recorded
        previous = step.name
        keyid = next(iter(metadata_by_step[step.name]))
        env = link.environment.get("chainproof", {}) if isinstance(link.environment, dict) else {}
        records[step.name] = StepRecord(
            name=step.name,
            keyid=keyid,
            materials={k: v.get("sha256", "") for k, v in link.materials.items()},
            products={k: v.get("sha256", "") for k, v in link.products.items()},
            environment=dict(env) if isinstance(env, dict) else {},
        )
    return records
