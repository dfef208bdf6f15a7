// Retention: the tenant's policies (read and written with admin), a dry run with its report,
// a run with confirmation followed to its end, and the history of sweeps.

import { api, can, newKey } from "./api.js";
import {
  badge, busy, checkbox, clear, errorBox, facts, field, h, heading, jsonBlock, plural, say, select, sleep, table, timeEl,
} from "./dom.js";
import { ioTable } from "./results.js";

const ACTIONS = ["anonymise", "delete", "export_then_delete", "export_only"];
const ENDED = ["completed", "completed_with_errors", "failed"];

export function render(root, ctx) {
  const policies = h("div");
  const work = h("div");
  const sweeps = h("div");
  clear(root, heading("Retention"),
    h("p", { class: "lead" }, "Rules that anonymise or delete what is older than a period (Art. 5(1)(e)); every enabled policy runs each night. Dry-run a policy to see what it would do, then run it now."),
    policies, work, sweeps);
  loadPolicies(policies, work, ctx, () => loadSweeps(sweeps, ctx));
  loadSweeps(sweeps, ctx);
}

async function loadPolicies(area, work, ctx, refreshSweeps) {
  let page;
  try {
    page = await api.get("retention-policies");
  } catch (err) {
    clear(area, h("section", { class: "card" }, h("h2", {}, "Policies"), errorBox(err),
      h("p", { class: "hint" }, "Reading and writing policies needs the admin scope; running one needs dsr:erase.")));
    return;
  }
  const admin = can(ctx.me, "admin");
  const erase = can(ctx.me, "dsr:erase");
  const reload = () => loadPolicies(area, work, ctx, refreshSweeps);
  clear(area, h("section", { class: "card", "aria-labelledby": "pol-title" },
    h("h2", { id: "pol-title" }, "Policies"),
    table(null, [
      ["Policy", (p) => h("span", {}, h("strong", {}, p.id), p.description ? h("span", { class: "hint block" }, p.description) : null)],
      ["Table", (p) => p.table],
      ["Older than", (p) => `${p.older_than} by ${p.date_attribute}`],
      ["Action", (p) => p.action.replaceAll("_", " ")],
      ["Scope", (p) => p.scope],
      ["Enabled", (p) => (p.enabled ? badge("enabled", "ok") : badge("disabled", "muted"))],
      ["", (p) => h("div", { class: "actions tight" },
        erase ? h("button", { type: "button", class: "small", "data-policy": p.id, "aria-label": `Dry run of ${p.id}`, onclick: () => dryRun(work, ctx, p, refreshSweeps) }, "Dry run") : null,
        admin ? h("button", { type: "button", class: "small", "aria-label": `Edit ${p.id}`, onclick: () => edit(work, ctx, p, reload) }, "Edit") : null)],
    ], page.items, { empty: "No retention policy yet." }),
    admin ? h("div", { class: "actions" }, h("button", { type: "button", onclick: () => edit(work, ctx, null, reload) }, "New policy")) : null));
}

function edit(work, ctx, p, reload) {
  const tables = (ctx.datamap?.tables || []).map((t) => [t.name, t.name]);
  const id = h("input", { type: "text", name: "policy_id", required: true, value: p?.id || "", pattern: "[a-z0-9][a-z0-9-]*", readonly: !!p });
  const tableSel = select(tables, { name: "table" });
  if (p) tableSel.value = p.table;
  const date = h("input", { type: "text", name: "date_attribute", required: true, value: p?.date_attribute || "" });
  const older = h("input", { type: "text", name: "older_than", required: true, value: p?.older_than || "P18M" });
  const action = select(ACTIONS.map((a) => [a, a.replaceAll("_", " ")]), { name: "action" });
  action.value = p?.action || "anonymise";
  const scope = select([["items", "items: the items alone"], ["subjects", "subjects: everything of the people the items name"]], { name: "scope" });
  scope.value = p?.scope || "items";
  const hold = h("input", { type: "text", name: "hold_attribute", value: p?.hold_attribute || "" });
  const filter = h("input", { type: "text", name: "filter", value: p && Object.keys(p.filter || {}).length ? JSON.stringify(p.filter) : "" });
  const desc = h("input", { type: "text", name: "description", value: p?.description || "" });
  const enabled = checkbox("Enabled (runs every night)", { checked: p ? p.enabled : true, name: "enabled" });
  const save = h("button", { type: "submit", class: "primary" }, "Save the policy");
  const errors = h("div");
  const form = h("form", { class: "card", "aria-labelledby": "edit-title" },
    h("h2", { id: "edit-title", tabindex: "-1" }, p ? `Edit ${p.id}` : "New policy"),
    h("div", { class: "grid" },
      field("Id", id, "Lower case, digits and dashes."), field("Table", tableSel),
      field("Date attribute", date, "The attribute whose date is compared, e.g. last_activity_at."),
      field("Older than", older, "An ISO 8601 duration back from now (P18M, P30D) or a date (2025-01-01)."),
      field("Action", action), field("Scope", scope),
      field("Legal hold attribute (optional)", hold, "Items where it is set are skipped and counted."),
      field("Filter (optional JSON)", filter, "Equality on attributes, e.g. {\"status\": \"closed\"}."),
      field("Description", desc)),
    enabled.wrap, h("div", { class: "actions" }, save, h("button", { type: "button", onclick: () => work.replaceChildren() }, "Close")), errors);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    let parsed = {};
    if (filter.value.trim()) {
      try { parsed = JSON.parse(filter.value); } catch { errors.replaceChildren(errorBox({ message: "The filter is not valid JSON: write an object such as {\"status\": \"closed\"}." })); filter.focus(); return; }
    }
    const body = { table: tableSel.value, date_attribute: date.value.trim(), older_than: older.value.trim(),
      action: action.value, scope: scope.value, enabled: enabled.input.checked, filter: parsed,
      hold_attribute: hold.value.trim() || null, description: desc.value.trim() };
    busy(save, async () => {
      await api.put(`retention-policies/${encodeURIComponent(id.value.trim())}`, body);
      say("Policy saved");
      work.replaceChildren(h("p", { class: "note", role: "status" }, `Policy ${id.value.trim()} saved.`));
      reload();
    }, errors, "Saving…");
  });
  clear(work, form);
  form.querySelector("h2").focus();
}

function sweepCounts(tables, caption) {
  const rows = Object.entries(tables || {}).map(([name, t]) => ({ name, ...t }));
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => k !== "name");
  return table(caption, [["Table", (r) => r.name], ...keys.map((k) => [k.replaceAll("_", " "), (r) => String(r[k] ?? 0)])], rows);
}

async function dryRun(work, ctx, p, refreshSweeps) {
  const status = h("p", { role: "status" }, `Dry run of ${p.id}: finding candidates…`);
  clear(work, h("section", { class: "card", "aria-labelledby": "dry-title" }, h("h2", { id: "dry-title", tabindex: "-1" }, `Dry run of ${p.id}`), status));
  work.querySelector("h2").focus();
  let res;
  try {
    res = await api.post(`retention-policies/${encodeURIComponent(p.id)}/run`, { dry_run: true });
  } catch (err) {
    status.replaceWith(errorBox(err));
    return;
  }
  const would = Object.values(res.tables).reduce((n, t) => n + Object.entries(t).filter(([k]) => k.startsWith("would_")).reduce((a, [, v]) => a + v, 0), 0);
  const verb = p.action.replaceAll("_", " ");
  const confirm = checkbox(`I understand that running ${p.id} now will ${verb} ${plural(would, "item")} dated before ${timeEl(res.cutoff).textContent} in ${Object.keys(res.tables).join(", ")}. This cannot be undone.`, { name: "confirm", "data-testid": "sweep-confirm" });
  confirm.wrap.classList.add("confirm");
  const run = h("button", { type: "button", class: "danger" }, "Run now");
  const errors = h("div");
  const follow = h("div");
  run.addEventListener("click", async () => {
    if (!confirm.input.checked) { errors.replaceChildren(errorBox({ message: "Not run: tick the confirmation first." })); confirm.input.focus(); return; }
    const started = await busy(run, () => api.post(`retention-policies/${encodeURIComponent(p.id)}/run`, { confirm: true }, { idempotencyKey: newKey() }), errors, "Starting…");
    if (started) { run.disabled = true; confirm.input.disabled = true; watch(ctx, started.sweep_id, follow, refreshSweeps); }
  });
  status.replaceWith(h("div", {},
    h("p", { class: "summary" }, `Nothing changed. A run would ${verb} ${plural(would, "item")} (cutoff ${timeEl(res.cutoff).textContent}, found through the ${res.finder}).`),
    sweepCounts(res.tables, "Per table"),
    h("details", {}, h("summary", {}, "AWS calls of the dry run"), ioTable(res.io)),
    can(ctx.me, "dsr:erase") ? [confirm.wrap, h("div", { class: "actions" }, run), errors] : null, follow));
}

async function watch(ctx, id, area, refresh) {
  const bar = h("progress", { max: "1", "aria-label": "Sweep progress" });
  const state = h("div", { role: "status" });
  clear(area, h("h3", {}, "Sweep ", h("code", {}, id)), bar, state);
  try {
    for (;;) {
      const s = await api.get(`retention-sweeps/${id}`);
      if (s.chunks) { bar.max = s.chunks; bar.value = s.chunks_done; }
      state.replaceChildren(sweepView(s));
      if (ENDED.includes(s.status)) { bar.max = 1; bar.value = 1; say(`Sweep ${s.status}`); refresh(); return; }
      await sleep(800, ctx.signal);
    }
  } catch (err) {
    if (err.name !== "AbortError") state.replaceChildren(errorBox(err));
  }
}

function sweepView(s) {
  return h("div", {},
    facts([["Status", badge(s.status)], ["Policy", s.policy_id], ["Action", s.action], ["Cutoff", timeEl(s.cutoff)],
      ["Started", timeEl(s.created_at)], ["Completed", timeEl(s.completed_at)], ["Chunks", `${s.chunks_done ?? 0} of ${s.chunks ?? "?"}`],
      ["Trigger", s.trigger], s.error ? ["Error", JSON.stringify(s.error)] : null]),
    sweepCounts(s.tables, "Per table"),
    s.report_url ? h("p", {}, h("a", { href: s.report_url, rel: "noreferrer" }, "Download the report (JSON)")) : null,
    h("details", {}, h("summary", {}, "AWS calls"), ioTable(s.io)));
}

async function loadSweeps(area, ctx) {
  try {
    const page = await api.get("retention-sweeps", { limit: 20 });
    const detail = h("div");
    clear(area, h("section", { class: "card", "aria-labelledby": "sw-title" },
      h("h2", { id: "sw-title" }, "Sweeps"),
      table(null, [
        ["Sweep", (s) => h("button", { type: "button", class: "link", onclick: () => { clear(detail, sweepView(s), jsonBlock("As the API answered", s)); detail.scrollIntoView(); } }, h("code", {}, s.sweep_id))],
        ["Policy", (s) => s.policy_id],
        ["Status", (s) => badge(s.status)],
        ["Started", (s) => timeEl(s.created_at)],
        ["Trigger", (s) => s.trigger],
        ["Done", (s) => Object.values(s.tables || {}).reduce((n, t) => n + (t.deleted || 0) + (t.anonymised || 0), 0).toString()],
      ], page.items, { empty: "No sweep has run yet." }), detail));
  } catch (err) {
    clear(area, errorBox(err));
  }
}
