"""Reports people and machines can read: a JSON document, a terminal table, one HTML file.

Example:
    >>> from chainproof.report import build_report, render_html  # doctest: +SKIP
    >>> doc = build_report(bundle, result=verify_bundle(bundle, trusted_owner_keys=keys))
    >>> Path("report.html").write_text(render_html(doc))

A report describes the chain as the bundle records it (steps, principals, keys,
images, digests, scan verdicts) and the outcome of verification: the checks that
passed, or the failure, with the failing step and artifact highlighted. The chain
part is read, not verified: only ``verified: true`` says the chain verified.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from chainproof.attest import link_filename
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    ChainproofError,
    DigestMismatch,
    PolicyViolation,
    UntrustedKey,
)
from chainproof.verify import LAYOUT_FILE, LINKS_DIR, VerificationResult, load_layout

__all__ = ["build_report", "render_html", "render_text"]


def _failure_facts(error: ChainproofError) -> dict[str, Any]:
    facts: dict[str, Any] = {"message": error.diagnostics(), "kind": type(error).__name__}
    step = getattr(error, "step", None)  # ChainError, StepFailed
    if isinstance(step, str) and step:
        facts["step"] = step
    if isinstance(error, ChainError) and error.artifact:
        facts["artifact"] = error.artifact
    if isinstance(error, (DigestMismatch,)):
        facts["artifact"] = error.artifact
    if isinstance(error, ArtifactRefused):
        facts["artifact"] = error.artifact
    if isinstance(error, UntrustedKey):
        facts["artifact"] = LAYOUT_FILE
    message = error.diagnostics()
    facts["check"] = str(getattr(error, "failed_check", "") or "")
    facts["violations"] = list(getattr(error, "violations", []) or ([message] if isinstance(error, PolicyViolation) else []))
    return facts


def _facts(env: dict[str, Any]) -> dict[str, Any]:
    signer = env.get("signer") or {}
    params = env.get("parameters") or {}
    principal = env.get("principal") or {}
    return {
        "principal": principal.get("name", "unknown"),
        "principal_kind": principal.get("kind", ""),
        "development_key": bool(signer.get("development")),
        "signer_backend": signer.get("backend", ""),
        "recorded": env.get("recorded", ""),
        "image": params.get("component_image", "") or "",
    }


def _scan_verdict(bundle: Path, name: str) -> str | None:
    path = bundle / name
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text()).get("verdict"))
    except (ValueError, AttributeError):
        return "unreadable"


def build_report(
    bundle: str | Path,
    *,
    result: VerificationResult | None = None,
    error: ChainproofError | None = None,
    policy_source: str = "",
    subject: str = "",
    owner_trust: dict[str, Any] | None = None,
    development_owner_key: bool = False,
) -> dict[str, Any]:
    """Describe a bundle's chain and the outcome of its verification.

    Args:
        bundle: the bundle folder.
        result: the verification result, when verification passed.
        error: the error, when it failed (``None`` with ``None`` result: not verified).
        policy_source: the auditor policy file that was applied, if any.
        subject: what the report is about when it is not the bundle folder itself
            (a registry reference such as ``vertex://.../models/ID@1``).
        owner_trust: which trusted owner key verified the layout and where its trust
            came from (:func:`chainproof.trust.describe_owner_trust`).
        development_owner_key: the trust store records the owner key as a development key.

    Returns:
        The report document (JSON-safe).
    """
    from chainproof.attest import load_link

    base = Path(bundle)
    steps: list[dict[str, Any]] = []
    expires = ""
    layout_error = ""
    layout: Any = None
    try:
        _, layout = load_layout((base / LAYOUT_FILE).read_bytes())
        names = [s.name for s in layout.steps]
        expires = str(layout.expires)
    except (OSError, ChainproofError) as exc:
        names, layout_error = [], str(exc)
    verified = {r.name: r for r in result.steps} if result is not None else {}
    for name in names:
        entry: dict[str, Any] = {"name": name, "link": None}
        record = verified.get(name)
        if record is not None:
            # What was verified is what is shown: never a file that merely sits in links/.
            env = record.environment
            entry.update(_facts(env), link=link_filename(name, record.keyid), keyid=record.keyid,
                         materials=dict(sorted(record.materials.items())), products=dict(sorted(record.products.items())))
        else:
            # Not verified (inspection or a failure): only files named for an authorized key.
            spec = next(s for s in layout.steps if s.name == name)
            files = [base / LINKS_DIR / link_filename(name, k) for k in spec.pubkeys]
            files = [f for f in files if f.is_file()]
            if files:
                try:
                    metadata, link = load_link(files[0])
                    env = link.environment.get("chainproof", {}) if isinstance(link.environment, dict) else {}
                    sigs = getattr(metadata, "signatures", {})
                    entry.update(
                        _facts(env if isinstance(env, dict) else {}),
                        link=files[0].name,
                        keyid=str(next(iter(sigs))) if isinstance(sigs, dict) and sigs else "",
                        materials={k: v.get("sha256", "") for k, v in sorted(link.materials.items())},
                        products={k: v.get("sha256", "") for k, v in sorted(link.products.items())},
                    )
                except ChainproofError as exc:
                    entry["error"] = str(exc)
        scans = {}
        for product in entry.get("products", {}):
            if product.startswith("reports/scan-"):
                scans[product] = _scan_verdict(base, product)
        entry["scan_verdicts"] = scans
        steps.append(entry)
    doc: dict[str, Any] = {
        "subject": subject or str(base),
        "bundle": str(base),
        "verified": result is not None and error is None,
        "layout": {"file": LAYOUT_FILE, "expires": expires, "error": layout_error},
        "steps": steps,
        "policy": policy_source,
    }
    if result is not None:
        dev_steps = result.development_key_steps
        doc.update(
            owner_keyid=result.owner_keyid,
            model_sha256=result.model_sha256 if result.model_files else None,
            model_files=result.model_files,
            checks=result.checks,
            attestations=result.attestations,
            development_keys=bool(dev_steps) or development_owner_key,
            development_key_steps=dev_steps,
            development_owner_key=development_owner_key,
        )
        card = _verified_card(Path(bundle), result)
        if card is not None:
            doc["model_card"] = card
    if owner_trust:
        doc["owner_trust"] = dict(owner_trust)
    if error is not None:
        doc["failure"] = _failure_facts(error)
        # Everything that passed before the failure, in order.
        doc["checks"] = list(getattr(error, "passed_checks", []) or [])
    return doc


def _verified_card(bundle: Path, result: VerificationResult) -> dict[str, Any] | None:
    """The bundle's signed model card, verified again (check (19)) for the report; None without one."""
    from chainproof.card import layout_card_keys, verify_card

    name = (result.attestations or {}).get("card")
    if not name:
        return None
    return dict(verify_card((bundle / name).read_bytes(), result, bundle, layout_card_keys(bundle)))


def _dev_note(doc: dict[str, Any]) -> str:
    parts = []
    if doc.get("development_key_steps"):
        parts.append("steps " + ", ".join(doc["development_key_steps"]))
    if doc.get("development_owner_key"):
        parts.append("the owner key")
    return "; ".join(parts)


def render_text(doc: dict[str, Any]) -> str:
    """Render the report as a terminal table (rich), ending with ``OK:`` or ``FAIL:``."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    out = StringIO()
    console = Console(file=out, width=140, highlight=False, force_terminal=False)
    failure = doc.get("failure") or {}
    table = Table(title=f"{doc['subject']}", show_lines=True)
    for col in ("step", "principal", "key", "materials → products", "scan"):
        table.add_column(col, overflow="fold")
    for step in doc["steps"]:
        name = step["name"] + ("  ✗" if failure.get("step") == step["name"] else "")
        if not step.get("link"):
            table.add_row(name, "-", "-", "no link", "-")
            continue
        mats = "\n".join(f"{k} {v[:12]}" for k, v in step.get("materials", {}).items())
        prods = "\n".join(f"{k} {v[:12]}" for k, v in step.get("products", {}).items())
        key = str(step.get("keyid", ""))[:16] + (" (development)" if step.get("development_key") else "")
        scans = ", ".join(f"{v}" for v in step.get("scan_verdicts", {}).values()) or "-"
        table.add_row(name, str(step.get("principal", "")), key, f"{mats}\n→\n{prods}", scans)
    console.print(table)
    # Plain lines, never wrapped: scripts read the last one.
    lines = [f"  {check}" for check in doc.get("checks", [])]
    trust = doc.get("owner_trust") or {}
    if trust:
        lines.append(f"  owner key {str(trust.get('keyid', ''))[:16]}: {trust.get('source', '')}")
    if doc["verified"]:
        dev = f"; verified with development keys ({_dev_note(doc)})" if doc.get("development_keys") else ""
        lines.append(f"OK: {doc['subject']}: model sha256 {doc.get('model_sha256')} verified ({len(doc['steps'])} steps){dev}")
    elif failure:
        violations = failure.get("violations") or []
        if len(violations) > 1:
            lines += [f"  policy violation: {v}" for v in violations]
        number = f"check ({failure['check']}) failed: " if failure.get("check") else ""
        lines.append(f"FAIL: {number}{failure['message']}")
    else:
        lines.append("not verified (inspect only): run chainproof verify")
    return out.getvalue() + "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:18px 28px;color:#fff;font-size:20px;font-weight:600}
header.pass{background:#1f7a3d} header.fail{background:#b3261e} header.unverified{background:#6b7280}
header.dev{background:#b45309}
header small{display:block;font-weight:400;font-size:13px;opacity:.9;margin-top:4px;word-break:break-all}
main{padding:20px 28px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 18px;margin-bottom:18px}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}
td.mono,span.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
tr.failed td{background:#fdecea}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11px;font-weight:600}
.safe{background:#dcfce7;color:#166534}.unsafe{background:#fee2e2;color:#991b1b}.dev{background:#fef3c7;color:#92400e}
.failure{border-color:#b3261e;background:#fdecea}
.dev-warning{border-color:#b45309;background:#fef3c7}
ul.checks{list-style:none;padding-left:4px}ul.checks li{margin:2px 0;font-size:13px}
svg text{font-family:system-ui,sans-serif}
.scroll{overflow-x:auto}
"""


def _graph_svg(doc: dict[str, Any]) -> str:
    """Draw step → artifact → step as an inline SVG (no external assets)."""
    steps = [s for s in doc["steps"]]
    failure = doc.get("failure") or {}
    col_w, box_w, box_h, art_h, art_w = 220, 160, 46, 24, 180
    producers: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        for name in s.get("products", {}):
            producers.setdefault(name, i)
        for name in s.get("materials", {}):
            consumers.setdefault(name, []).append(i)
    arts_by_step: dict[int, list[str]] = {}
    for name, i in producers.items():
        arts_by_step.setdefault(i, []).append(name)
    sources = sorted(n for n in consumers if n not in producers)
    rows = max([len(v) for v in arts_by_step.values()] + [len(sources), 1])
    height = 110 + rows * (art_h + 10) + 20
    width = 40 + (2 * len(steps) + 1) * col_w // 2 + col_w
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="attestation chain">']
    parts.append('<defs><marker id="arr" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#6b7280"/></marker></defs>')
    step_x = {i: 20 + col_w // 2 + i * col_w for i in range(len(steps))}
    step_y = 20

    art_pos: dict[str, tuple[int, int]] = {}
    for j, name in enumerate(sources):
        art_pos[name] = (20, 110 + j * (art_h + 10))
    for i, names in arts_by_step.items():
        for j, name in enumerate(sorted(names)):
            art_pos[name] = (step_x[i] + col_w // 2 - 10, 110 + j * (art_h + 10))
    # Edges: producer step → artifact, artifact → each consumer step.
    for name, (ax, ay) in art_pos.items():
        if name in producers:
            i = producers[name]
            parts.append(f'<line x1="{step_x[i] + box_w // 2}" y1="{step_y + box_h}" x2="{ax}" y2="{ay + art_h // 2}" stroke="#9ca3af" marker-end="url(#arr)"/>')
        for c in consumers.get(name, []):
            if c == producers.get(name):
                continue
            parts.append(f'<line x1="{ax + art_w}" y1="{ay + art_h // 2}" x2="{step_x[c] + 10}" y2="{step_y + box_h}" stroke="#cbd5e1" marker-end="url(#arr)"/>')
    for i, s in enumerate(steps):
        failed = failure.get("step") == s["name"]
        missing = not s.get("link")
        stroke = "#b3261e" if failed or missing else "#1f2937"
        fill = "#fdecea" if failed or missing else "#eef2ff"
        parts.append(f'<rect x="{step_x[i]}" y="{step_y}" width="{box_w}" height="{box_h}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="{3 if failed else 1.5}"/>')
        parts.append(f'<text x="{step_x[i] + box_w // 2}" y="{step_y + 20}" text-anchor="middle" font-size="13" font-weight="600">{html.escape(s["name"])}</text>')
        sub = "no link" if missing else str(s.get("principal", ""))[:24]
        parts.append(f'<text x="{step_x[i] + box_w // 2}" y="{step_y + 37}" text-anchor="middle" font-size="10" fill="#4b5563">{html.escape(sub)}</text>')
    for name, (ax, ay) in art_pos.items():
        failed = failure.get("artifact") == name
        parts.append(f'<rect x="{ax}" y="{ay}" width="{art_w}" height="{art_h}" rx="4" fill="{"#fdecea" if failed else "#fff"}" stroke="{"#b3261e" if failed else "#9ca3af"}" stroke-width="{2.5 if failed else 1}"/>')
        label = name if len(name) <= 30 else "…" + name[-29:]
        parts.append(f'<text x="{ax + 6}" y="{ay + 16}" font-size="10"><title>{html.escape(name)}</title>{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _card_section(doc: dict[str, Any]) -> str:
    if not doc.get("model_card"):
        return ""
    from chainproof.card import render_card_html

    return render_card_html(doc["model_card"])


def render_html(doc: dict[str, Any]) -> str:
    """Render the report as one self-contained HTML page (inline CSS and SVG, no external assets)."""
    failure = doc.get("failure") or {}
    state = "pass" if doc["verified"] else ("fail" if failure else "unverified")
    if state == "pass" and doc.get("development_keys"):
        state = "dev"
    title = {"pass": "VERIFIED", "dev": "VERIFIED WITH DEVELOPMENT KEYS", "fail": "VERIFICATION FAILED",
             "unverified": "NOT VERIFIED (inspection only)"}[state]
    esc = html.escape
    rows = []
    for s in doc["steps"]:
        cls = ' class="failed"' if failure.get("step") == s["name"] or not s.get("link") else ""
        if not s.get("link"):
            rows.append(f'<tr{cls}><td>{esc(s["name"])}</td><td colspan="6">no link found</td></tr>')
            continue
        dev = ' <span class="badge dev">development key</span>' if s.get("development_key") else ""
        scans = " ".join(
            f'<span class="badge {"safe" if v == "safe" else "unsafe"}">{esc(k.split("/")[-1])}: {esc(str(v))}</span>'
            for k, v in s.get("scan_verdicts", {}).items()
        ) or "—"

        def _digests(items: dict[str, str]) -> str:
            out = []
            for k, v in items.items():
                mark = ' style="color:#b3261e;font-weight:700"' if failure.get("artifact") == k else ""
                out.append(f"<div{mark}>{esc(k)} <span class=\"mono\">{esc(v[:16])}</span></div>")
            return "".join(out)

        rows.append(
            f"<tr{cls}><td>{esc(s['name'])}</td><td>{esc(str(s.get('principal', '')))}<br><small>{esc(str(s.get('principal_kind', '')))}</small></td>"
            f"<td class=\"mono\">{esc(str(s.get('keyid', ''))[:16])}{dev}</td><td class=\"mono\">{esc(str(s.get('image') or '—'))}</td>"
            f"<td>{_digests(s.get('materials', {}))}</td><td>{_digests(s.get('products', {}))}</td><td>{scans}</td></tr>"
        )
    checks = "".join(f"<li>{esc(c)}</li>" for c in doc.get("checks", []))
    failure_html = ""
    if failure:
        where = " · ".join(esc(str(failure[k])) for k in ("step", "artifact") if failure.get(k))
        number = f'<p id="failed-check">check ({esc(str(failure["check"]))}) failed</p>' if failure.get("check") else ""
        violations = failure.get("violations") or []
        listed = (
            '<ul id="violations">' + "".join(f"<li>{esc(v)}</li>" for v in violations) + "</ul>"
            if len(violations) > 1 else ""
        )
        failure_html = (
            f'<section class="failure" id="failure"><h2>What failed</h2>{number}<p><b>{esc(failure["message"])}</b></p>'
            f"{listed}<p>{where}</p><p><small>{esc(failure['kind'])}</small></p></section>"
        )
    dev_html = ""
    if state == "dev":
        dev_html = (
            '<section class="dev-warning" id="development-keys"><h2>Verified with development keys</h2>'
            f"<p>Signed with development keys ({esc(_dev_note(doc))}): fine for a local trial, not evidence "
            "for production. <code>--require-production-keys</code> or the auditor policy "
            "<code>allow_development_keys: false</code> make this a failure.</p></section>"
        )
    trust = doc.get("owner_trust") or {}
    trust_html = (
        f'<p id="owner-trust">owner key <span class="mono">{esc(str(trust.get("keyid", ""))[:16])}</span>: {esc(str(trust.get("source", "")))}</p>'
        if trust else ""
    )
    model = ""
    if doc.get("model_sha256"):
        model = f'<p>model sha256 <span class="mono">{esc(doc["model_sha256"])}</span> · owner key <span class="mono">{esc(str(doc.get("owner_keyid", ""))[:16])}</span></p>'
    attest = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in (doc.get("attestations") or {}).items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chainproof: {esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<header class="{state}" id="banner">{esc(title)}<small>{esc(doc['subject'])}</small></header>
<main>
{failure_html}{dev_html}
<section><h2>Chain</h2>{model}{trust_html}<div class="scroll">{_graph_svg(doc)}</div></section>
<section><h2>Steps</h2><div class="scroll"><table>
<tr><th>step</th><th>principal</th><th>key</th><th>image</th><th>materials</th><th>products</th><th>scan</th></tr>
{''.join(rows)}
</table></div></section>
{_card_section(doc)}<section><h2>Checks that passed</h2><ul class="checks" id="passed-checks">{checks or '<li>none</li>'}</ul>
<p><small>attestations: {attest or 'none verified'} · layout expires {esc(doc['layout'].get('expires', ''))}{' · auditor policy ' + esc(doc['policy']) if doc.get('policy') else ''}</small></p></section>
</main></body></html>
"""
