// How a request reads: its per-table outcome, verification, export, certificate and AWS
// calls; used by the act panel (when a request it filed ends) and the request page.

import { api } from "./api.js";
import { badge, busy, downloadJson, errorBox, facts, h, jsonBlock, plural, table, timeEl } from "./dom.js";

export const OPEN = ["received", "awaiting_verification", "awaiting_approval", "queued", "running",
  "finishing"];
export const RUNNING = ["received", "queued", "running", "finishing"];
export const ENDED = ["completed", "completed_with_errors", "cancelled"];

const COUNTS = [["matched", "Matched"], ["deleted", "Deleted"], ["anonymised", "Anonymised"],
  ["updated", "Updated"], ["kept", "Kept"], ["gone", "Gone since the plan"], ["exported", "Exported"],
  ["files_deleted", "Files deleted"]];

export function countsTable(caption, tables) {
  const rows = Object.entries(tables || {}).map(([name, t]) => ({ name, ...t }));
  const cols = COUNTS.filter(([k]) => rows.some((r) => r[k] !== undefined));
  return table(caption, [["Table", (r) => r.name.replaceAll("_", " ")],
    ...cols.map(([k, label]) => [label, (r) => String(r[k] ?? 0)])], rows,
  { empty: "No table was touched." });
}

/** passed, failed, or (passed: null) what was not a pass nor a failure: all exempt (kept by
 * law or on hold), nothing to verify (nothing found) */
function verdictBadge(v) {
  if (v.passed === true) return badge("passed", "ok");
  if (v.passed === null && ["all_exempt", "nothing_to_verify"].includes(v.outcome)) {
    return badge(v.outcome, "info");
  }
  return badge("failed", "bad");
}

export function verificationView(v) {
  if (!v) return null;
  return h("section", { class: "verification", "aria-label": "Verification" },
    h("h4", {}, "Verification ", verdictBadge(v)),
    facts([
      ["Items read back", String(v.items_checked ?? "—")],
      ["Items remaining", Object.keys(v.remaining || {}).length ? JSON.stringify(v.remaining) : "none"],
      ["Files remaining", String(v.files_remaining ?? "—")],
      ["Fresh search from the identities", v.identity_lookup_tenants !== undefined ? `in ${plural(v.identity_lookup_tenants, "tenant")}` : "—"],
      ["Checked at", timeEl(v.at)],
    ]));
}

export function ioTable(io) {
  const all = io || {};
  const rows = Object.entries(all).filter(([, v]) => typeof v === "number").sort(([a], [b]) => a.localeCompare(b));
  const calls = table("AWS calls", [["Operation", ([k]) => h("code", {}, k)], ["Count", ([, v]) => String(v)]], rows,
    { empty: "No AWS calls recorded." });
  const cost = all.cost_usd;
  if (!cost) return calls;
  const usd = (v) => `$${Number(v).toFixed(6)}`;
  const note = all.complete ? "every call counted" : "not every call counted yet";
  return h("div", {}, calls, h("p", { class: "cost" },
    `Estimated AWS cost ${usd(cost.total)}: the tenant's tables and files ${usd(cost.tenant)}, oblio ${usd(cost.oblio)} (${note}; ${cost.prices}).`));
}

/** The archive of a finished access request: size, expiry, and a download of minutes. */
export function exportView(r) {
  const e = r.result?.export;
  if (!e) return null;
  const errors = h("div");
  const expired = e.expires_at && new Date(e.expires_at) < new Date();
  const button = h("button", { type: "button", class: "primary", disabled: expired }, "Download the archive");
  button.addEventListener("click", () => busy(button, async () => {
    const d = await api.get(`requests/${r.id}/download`);
    window.location.assign(d.url); // a presigned URL of minutes: the browser saves the ZIP
  }, errors, "Preparing the download…"));
  return h("section", { class: "export", "aria-label": "Export" },
    h("h4", {}, "The archive"),
    facts([
      ["Size", `${(e.size / 1024).toFixed(1)} KiB`],
      ["Items", String(e.items)],
      ["Files", `${e.files}${e.files_missing ? ` (${e.files_missing} missing)` : ""}`],
      ["Expires", h("span", {}, timeEl(e.expires_at), expired ? badge("expired", "bad") : ` (kept ${e.ttl_days} days)`)],
      ["SHA-256", h("code", { class: "wrap" }, e.sha256)],
      r.result.notified !== undefined ? ["Requester told by e-mail", r.result.notified ? "yes" : "no"] : null,
    ]),
    h("div", { class: "actions" }, button), errors);
}

export function outcome(r) {
  const res = r.result || {};
  const parts = [];
  if (r.error) parts.push(h("div", { class: "error", role: "alert" }, h("p", {}, h("strong", {}, "Error: "), typeof r.error === "string" ? r.error : JSON.stringify(r.error))));
  if (res.found === false) parts.push(h("p", { class: "muted" }, "Nothing of the person was found: nothing was changed."));
  if (res.tables) parts.push(countsTable("Per table", res.tables));
  for (const [tenant, t] of Object.entries(res.tenants || {})) {
    parts.push(countsTable(`In ${tenant}`, t.tables || t));
  }
  parts.push(exportView(r));
  parts.push(verificationView(res.verification));
  if (res.certificate) {
    parts.push(h("section", { class: "certificate", "aria-label": "Certificate" },
      h("h4", {}, "Certificate"),
      facts([
        ["Request", h("code", {}, res.certificate.request_id)],
        ["Subject", h("code", {}, res.certificate.subject_ref)],
        ["Started", timeEl(res.certificate.started_at)],
        ["Completed", timeEl(res.certificate.completed_at)],
        ["Suppression entries", String(res.certificate.suppression_entries ?? "—")],
        ["Audit entry", res.certificate.audit_entry ? h("code", { class: "wrap" }, `${res.certificate.audit_entry.id} · ${res.certificate.audit_entry.hash}`) : "—"],
      ]),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => downloadJson(`certificate-${r.id}.json`, res.certificate) }, "Download the certificate (JSON)")),
      jsonBlock("The certificate as issued", res.certificate)));
  }
  if (res.io) parts.push(h("details", { class: "io" }, h("summary", {}, `AWS calls (${Object.values(res.io).filter((v) => typeof v === "number").reduce((a, b) => a + b, 0)})`), ioTable(res.io)));
  return h("div", { class: "outcome" }, parts);
}

export function timelineList(events) {
  return h("ol", { class: "timeline" }, (events || []).map((e) => {
    const extra = Object.entries(e).filter(([k]) => !["at", "event"].includes(k))
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
    return h("li", {}, timeEl(e.at), " ", h("strong", {}, String(e.event).replaceAll("_", " ")), extra ? h("span", { class: "muted" }, ` — ${extra}`) : null);
  }));
}

export { errorBox };
