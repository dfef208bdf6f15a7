// Settings and keys (admin): the tenant's settings, its child tenants, and its API keys
// (create: the key is shown once; revoke).

import { api } from "./api.js";
import { badge, busy, checkbox, clear, errorBox, facts, field, h, heading, say, select, table, timeEl } from "./dom.js";

const SCOPES = [
  ["dsr:read", "read requests, search people, follow jobs"],
  ["dsr:write", "file non-destructive requests (export, rectify, restrict, object)"],
  ["dsr:erase", "erase, anonymise, bulk erasure, run retention"],
  ["consent:read", "read consents"], ["consent:write", "record consents"],
  ["audit:read", "read and verify the audit log"], ["admin", "settings, keys, policies; implies all"],
];

export function render(root, ctx) {
  const tenant = h("div");
  const keys = h("div");
  clear(root, heading("Settings and keys"), tenant, keys);
  loadTenant(tenant);
  loadKeys(keys, ctx);
}

async function loadTenant(area) {
  let t;
  try { t = await api.get("tenant"); } catch (err) { clear(area, errorBox(err)); return; }
  const s = t.settings;
  const ttl = select([["10", "10 days"], ["14", "14 days"], ["30", "30 days"]], { name: "export_ttl_days" });
  ttl.value = String(s.export_ttl_days);
  const exportFirst = checkbox("Require an access export before an anonymisation", { checked: !!s.require_export_before_anonymisation, name: "require_export_before_anonymisation" },
    "An anonymisation is refused (409 export_required) unless the person has an unexpired access export.");
  const region = h("input", { type: "text", name: "default_phone_region", value: s.default_phone_region || "", maxlength: "2", autocomplete: "off" });
  const purposes = h("input", { type: "text", name: "purposes", value: (s.purposes || []).join(", ") });
  const slug = h("input", { type: "text", name: "public_slug", value: s.public_slug || "" });
  const approval = checkbox("Self-service requests wait for approval by the DPO", { checked: !!s.selfservice_requires_approval, name: "selfservice_requires_approval" });
  const pause = checkbox("Self-service due dates count from verification", { checked: !!s.selfservice_due_pauses_until_verified, name: "selfservice_due_pauses_until_verified" });
  const perHour = h("input", { type: "number", name: "public_requests_per_hour", min: "1", value: String(s.public_requests_per_hour ?? 20) });
  const save = h("button", { type: "submit", class: "primary" }, "Save the settings");
  const errors = h("div");
  const form = h("form", { class: "card", "aria-labelledby": "set-title" },
    h("h2", { id: "set-title" }, `Tenant ${t.name}`),
    facts([["Tenant id", h("code", {}, t.tenant_id)], ["Parent", t.parent_id],
      ["Child tenants", t.children.length ? t.children.join(", ") : "none"]]),
    h("div", { class: "grid" },
      field("Export archives expire after", ttl),
      field("Default phone region", region, "Two letters (IT, FR): national phone numbers are read in it."),
      field("Consent purposes", purposes, "Comma separated."),
      field("Self-service public name", slug, "The tenant's name on the self-service endpoint; empty: no self-service."),
      field("Self-service requests per address and hour", perHour)),
    exportFirst.wrap, approval.wrap, pause.wrap,
    h("div", { class: "actions" }, save), errors);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = {
      export_ttl_days: Number(ttl.value), require_export_before_anonymisation: exportFirst.input.checked,
      default_phone_region: region.value.trim() ? region.value.trim().toUpperCase() : null,
      purposes: purposes.value.split(",").map((p) => p.trim()).filter(Boolean),
      public_slug: slug.value.trim() || null, selfservice_requires_approval: approval.input.checked,
      selfservice_due_pauses_until_verified: pause.input.checked, public_requests_per_hour: Number(perHour.value),
    };
    const changed = Object.fromEntries(Object.entries(next).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(s[k] ?? null)));
    if (!Object.keys(changed).length) { errors.replaceChildren(h("p", { class: "note", role: "status" }, "Nothing changed.")); return; }
    busy(save, async () => {
      await api.patch("tenant", { settings: changed });
      say("Settings saved");
      await loadTenant(area);
      area.querySelector("form").append(h("p", { class: "note ok", role: "status" }, `Saved: ${Object.keys(changed).join(", ")}.`));
    }, errors, "Saving…");
  });
  clear(area, form);
}

async function loadKeys(area, ctx) {
  let page;
  try { page = await api.get("keys"); } catch (err) { clear(area, errorBox(err)); return; }
  const errors = h("div");
  const reload = () => loadKeys(area, ctx);
  const list = table(null, [
    ["Name", (k) => k.name || h("span", { class: "muted" }, "unnamed")],
    ["Key id", (k) => h("code", {}, k.key_id)],
    ["Scopes", (k) => k.scopes.join(", ")],
    ["Children", (k) => (k.children ? "yes" : "no")],
    ["Created", (k) => timeEl(k.created_at)],
    ["State", (k) => (k.revoked ? badge("revoked", "bad") : k.key_id === ctx.me.key_id ? badge("this key", "info") : badge("active", "ok"))],
    ["", (k) => (k.revoked || k.key_id === ctx.me.key_id ? "" : h("button", { type: "button", class: "small danger-outline", "aria-label": `Revoke ${k.name || k.key_id}…`, onclick: (e) => {
      const yes = h("button", { type: "button", class: "danger small" }, `Revoke ${k.name || k.key_id}`);
      yes.addEventListener("click", () => busy(yes, async () => { await api.post(`keys/${k.key_id}/revoke`); say("Key revoked"); reload(); }, errors, "Revoking…"));
      e.target.replaceWith(yes);
      yes.focus();
    } }, "Revoke…"))],
  ], page.items, { empty: "No key." });

  const name = h("input", { type: "text", name: "key_name", maxlength: "100", autocomplete: "off" });
  const boxes = SCOPES.map(([s, hint]) => checkbox(s, { value: s, name: "scopes" }, hint));
  const children = checkbox("May act on child tenants", { name: "children" });
  const create = h("button", { type: "submit", class: "primary" }, "Create the key");
  const shown = h("div");
  const form = h("form", { class: "card", "aria-labelledby": "newkey-title" },
    h("h2", { id: "newkey-title" }, "New API key"),
    field("Name", name, "Who or what uses it, e.g. \"helpdesk read-only\"."),
    h("fieldset", { class: "scopes" }, h("legend", {}, "Scopes"), boxes.map((b) => b.wrap)),
    ctx.me.children_allowed ? children.wrap : null,
    h("div", { class: "actions" }, create), shown);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const scopes = boxes.filter((b) => b.input.checked).map((b) => b.input.value);
    busy(create, async () => {
      const k = await api.post("keys", { name: name.value.trim(), scopes, children: ctx.me.children_allowed && children.input.checked });
      const out = h("input", { type: "text", readonly: true, value: k.api_key, "data-testid": "new-key", class: "wrap" });
      const copy = h("button", { type: "button", class: "small" }, "Copy");
      copy.addEventListener("click", async () => { out.select(); try { await navigator.clipboard.writeText(k.api_key); say("Copied"); } catch { document.execCommand?.("copy"); } });
      await reload();
      clear(shown, h("div", { class: "note warn", role: "status" },
        h("p", {}, h("strong", {}, "Store this key now: "), "it is shown once and kept only as a hash."),
        field(`Key ${k.key_id} (${k.scopes.join(", ")})`, out), copy));
      area.querySelector("form")?.replaceWith(form);
      out.focus();
      out.select();
    }, errors, "Creating…");
  });
  clear(area, h("section", { class: "card", "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, "API keys"), list, errors), form);
}
