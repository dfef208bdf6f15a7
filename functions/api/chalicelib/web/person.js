// Find a person: where they appear (per table, counts and keys), pending deliveries,
// consents and their history, suppression and restriction, child tenants; then act.
// The identity travels in the body of POST /v1/subjects/search and stays in memory.

import { api, can } from "./api.js";
import { actPanel } from "./actions.js";
import {
  badge, busy, checkbox, clear, errorBox, field, h, heading, plural, say, select, table, timeEl,
} from "./dom.js";

const KINDS = [["email", "E-mail"], ["phone", "Phone"], ["external_id", "External id"]];
// kept while the tab is open, so that the Requests page and back does not lose the person
let state = { kind: "email", value: "", children: false, result: null, subject: null };

export function forget() {
  state = { kind: "email", value: "", children: false, result: null, subject: null };
}

export function render(root, ctx) {
  const { me } = ctx;
  const kind = select(KINDS, { name: "kind" });
  kind.value = state.kind;
  const value = h("input", { type: "text", name: "identity", autocomplete: "off",
    spellcheck: "false", required: true, value: state.value });
  const hints = { email: "Compared case-insensitively.",
    phone: "E.164 (+39 333 123 4567), or a national number in the tenant's region.",
    external_id: "Your system's id of the person." };
  const hint = h("p", { class: "hint", id: "identity-hint" }, hints[state.kind]);
  value.setAttribute("aria-describedby", "identity-hint");
  kind.addEventListener("change", () => { hint.textContent = hints[kind.value]; value.type = kind.value === "email" ? "email" : "text"; });
  value.type = state.kind === "email" ? "email" : "text";
  const mayChildren = me.children_allowed && me.children.length > 0;
  const children = checkbox(`Include child tenants (${me.children.join(", ")})`, { checked: state.children });
  const go = h("button", { type: "submit", class: "primary" }, "Search");
  const errors = h("div");
  const results = h("div", { class: "results" });
  const form = h("form", { class: "card search", role: "search", "aria-label": "Find a person" },
    h("div", { class: "row" },
      field("Identity", kind),
      h("div", { class: "field grow" }, h("label", { for: "identity-value" }, "Value"), value, hint),
      h("div", { class: "field end" }, go)),
    mayChildren ? children.wrap : null, errors);
  value.id = "identity-value";

  async function search(focusResults = true) {
    state = { ...state, kind: kind.value, value: value.value.trim(), children: mayChildren && children.input.checked };
    if (!state.value) { errors.replaceChildren(errorBox({ message: "Type an e-mail, a phone number or an external id." })); value.focus(); return; }
    const subject = { [state.kind]: state.value };
    results.setAttribute("aria-busy", "true");
    clear(results, h("p", { class: "muted", role: "status" }, "Searching every mapped table…"));
    const found = await busy(go, () => api.post("subjects/search",
      { subject, include_children: state.children }), errors, "Searching…");
    results.removeAttribute("aria-busy");
    if (!found) return;
    state.result = found;
    state.subject = subject;
    showResults(results, ctx, found, subject, () => search(false));
    if (focusResults) results.querySelector("h2")?.focus();
    say(found.found ? `Found in ${found.tables_found} tables` : "Nothing found");
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); search(); });
  clear(root, heading("Find a person"),
    h("p", { class: "lead" }, "Search every mapped table for one person, then act on them: export, erase, anonymise, rectify, restrict or object. Each action shows its dry run first."),
    form, results);
  if (state.result && state.subject) showResults(results, ctx, state.result, state.subject, () => search(false));
}

function tableName(name) { return name.replaceAll("_", " "); }

function keysList(keys) {
  if (!keys.length) return "—";
  return h("details", {}, h("summary", {}, plural(keys.length, "key")),
    h("ul", { class: "keys" }, keys.map((k) => h("li", {}, h("code", {}, Object.entries(k)
      .map(([a, v]) => `${a}=${v}`).join(" "))))));
}

function appearance(name, result) {
  // the map's name of the table (the one actions take); the answer's `table` is the physical
  // table, which a tenant's DPO does not need
  const rows = Object.entries(result.tables).map(([table, t]) => ({ ...t, table }));
  return table(name, [
    ["Table", (r) => tableName(r.table)],
    ["Items", (r) => r.count ? String(r.count) : h("span", { class: "muted" }, "0")],
    ["Files", (r) => String(r.files || 0)],
    ["Item keys", (r) => keysList(r.keys)],
  ], rows, { cls: "appear" });
}

function statusBadges(r) {
  const out = [];
  out.push(r.found ? badge(`found in ${plural(Object.values(r.tables).filter((t) => t.count).length, "table")}`, "info")
    : badge("not found", "muted"));
  if (r.suppressed) out.push(badge("suppressed", "warn"));
  if (r.restricted) out.push(badge("restricted", "warn"));
  return h("p", { class: "badges" }, out);
}

function showResults(root, ctx, r, subject, refresh) {
  const summary = r.found
    ? `Found in ${r.tables_found} of ${Object.keys(r.tables).length} tables: ${plural(r.total, "item")}.`
    : "Nothing of this person was found in any mapped table.";
  const parts = [
    h("h2", { tabindex: "-1", id: "found-title" }, "Where this person appears"),
    statusBadges(r),
    h("p", { class: "summary", "data-testid": "search-summary" }, summary),
    h("p", { class: "hint" }, "Subject reference (a keyed HMAC; requests and the audit log name the person by it): ", h("code", {}, r.subject_ref)),
  ];
  if (r.suppressed && r.suppression?.length) {
    parts.push(table("On the suppression list", [
      ["Identity", (s) => s.ref || "—"],
      ["Reason", (s) => s.reason || "—"],
      ["Since", (s) => timeEl(s.at || s.created_at)],
    ], r.suppression));
  }
  if (r.found) parts.push(appearance("Per mapped table", r));
  parts.push(pendingDeliveries(ctx, r));
  parts.push(consents(r));
  const childIds = Object.keys(r.children || {});
  if (childIds.length) {
    parts.push(h("h3", {}, "Child tenants"));
    for (const id of childIds) {
      const c = r.children[id];
      parts.push(h("section", { class: "child", "aria-label": `Child tenant ${id}` },
        h("h4", {}, id, " ", c.found ? badge(plural(c.total, "item"), "info") : badge("not found", "muted"),
          c.suppressed ? badge("suppressed", "warn") : null, c.restricted ? badge("restricted", "warn") : null),
        c.found ? appearance(`In ${id}`, c) : null));
    }
  }
  const act = actPanel(ctx, subject, r, refresh);
  clear(root, h("section", { class: "card", "aria-labelledby": "found-title" }, parts), act);
}

function pendingDeliveries(ctx, r) {
  const wrap = h("section", { class: "pending", "aria-labelledby": "pending-title" },
    h("h3", { id: "pending-title" }, "Pending deliveries"));
  if (!r.pending_deliveries?.length) {
    wrap.append(h("p", { class: "muted" }, "No scheduled send or subscription will reach this person."));
    return wrap;
  }
  const dm = ctx.datamap;
  const purposesOf = (name) => dm?.tables.find((t) => t.name === name)?.purposes || [];
  const mayWrite = can(ctx.me, "dsr:write");
  wrap.append(table(null, [
    ["Table", (p) => tableName(p.table)],
    ["Deliveries", (p) => String(p.count)],
    ["Purposes", (p) => purposesOf(p.table).join(", ") || "—"],
    ["Item keys", (p) => keysList(p.keys)],
    ["", (p) => mayWrite && purposesOf(p.table).length ? h("button", {
      type: "button", class: "small", "aria-label": `Take out of ${tableName(p.table)}: object to ${purposesOf(p.table).join(", ")}`,
      onclick: () => document.dispatchEvent(new CustomEvent("oblio:act", { detail: { type: "objection", purposes: purposesOf(p.table) } })),
    }, `Object to ${purposesOf(p.table).join(", ")}…`) : ""],
  ], r.pending_deliveries));
  if (mayWrite) {
    wrap.append(h("p", {}, h("button", { type: "button", class: "small", onclick: () =>
      document.dispatchEvent(new CustomEvent("oblio:act", { detail: { type: "objection", purposes: dm?.objection_purposes || ["marketing"] } })),
    }, "Take out of every pending delivery…"), " ",
    h("span", { class: "hint" }, "An objection (Art. 21) takes the person out of every delivery that serves its purposes, and suppresses them for those purposes; its dry run shows which deliveries first.")));
  }
  return wrap;
}

function consents(r) {
  const state = Object.entries(r.consents || {});
  const wrap = h("section", { "aria-labelledby": "consent-title" }, h("h3", { id: "consent-title" }, "Consents"));
  wrap.append(state.length ? h("ul", { class: "consents" }, state.map(([p, s]) =>
    h("li", {}, h("span", {}, p), " ", badge(s, s === "none" ? "muted" : undefined)))) : h("p", { class: "muted" }, "No purposes."));
  const history = r.consent_history || [];
  wrap.append(h("details", {}, h("summary", {}, `History (${plural(history.length, "event")})`),
    table(null, [
      ["When", (e) => timeEl(e.at)],
      ["Purpose", (e) => e.purpose],
      ["Status", (e) => badge(e.status)],
      ["Channel", (e) => e.channel || "—"],
      ["Source", (e) => e.source || "—"],
      ["Policy", (e) => e.policy_version || "—"],
      ["Recorded", (e) => timeEl(e.recorded_at)],
    ], history, { empty: "No consent events." })));
  return wrap;
}
