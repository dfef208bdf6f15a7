// Act on one person: every right is a form whose dry run comes first, shown as a preview
// per table; then the run, which for an irreversible action needs a box ticked that says
// what will happen; then the request followed live to its outcome.

import { ApiError, api, can, newKey } from "./api.js";
import {
  badge, busy, checkbox, clear, errorBox, field, h, plural, say, sleep, table, timeEl,
} from "./dom.js";
import { RUNNING, outcome, timelineList } from "./results.js";

export const ACTIONS = [
  { type: "access", label: "Access export", art: "Art. 15, 20", scope: "dsr:write", run: "Start the export",
    intro: "Collects everything of the person into one ZIP (subject.json with the information sheet, a CSV per table, the files). The archive expires after the tenant's export TTL; you download it here when it is ready." },
  { type: "erasure", label: "Erase", art: "Art. 17", scope: "dsr:erase", irreversible: true, run: "Erase permanently",
    intro: "Deletes every item of the person, or keeps an anonymised shell where the data map says so (tickets keep their figures), deletes their files with every version, and adds them to the suppression list. Irreversible." },
  { type: "anonymisation", label: "Anonymise", art: "Art. 17, 25", scope: "dsr:erase", irreversible: true, run: "Anonymise permanently",
    intro: "Applies the data map's anonymisation rules attribute by attribute in all tables or the ones you choose; files are deleted; the person remains only as a pseudonym. Irreversible." },
  { type: "rectification", label: "Rectify", art: "Art. 16", scope: "dsr:write", run: "Rectify",
    intro: "Sets the corrected values in every mapped table that holds the attribute (an identity reaches every attribute holding it)." },
  { type: "restriction", label: "Restrict", art: "Art. 18", scope: "dsr:write", run: "Restrict processing",
    intro: "Sets the profile's restriction flag and takes the person out of every pending delivery; it can be lifted later." },
  { type: "objection", label: "Object", art: "Art. 21", scope: "dsr:write", run: "File the objection",
    intro: "Takes the person out of the pending deliveries of the purposes named, withdraws their consent to them and suppresses them at once." },
];

export function actPanel(ctx, subject, found, refresh) {
  const allowed = ACTIONS.filter((a) => can(ctx.me, a.scope));
  const section = h("section", { class: "card act", "aria-labelledby": "act-title" },
    h("h2", { id: "act-title", tabindex: "-1" }, "Act on this person"));
  if (!allowed.length) {
    section.append(h("p", { class: "muted", "data-testid": "read-only" },
      "This key can only read: filing a request needs dsr:write (dsr:erase for erasure and anonymisation). Ask a tenant admin for such a key."));
    return section;
  }
  const bar = h("div", { class: "toolbar", role: "group", "aria-label": "Actions" });
  const pane = h("div", { class: "pane" });
  const buttons = {};
  function open(type, preset = {}) {
    const a = ACTIONS.find((x) => x.type === type);
    if (!a || !buttons[type]) return;
    for (const [t, b] of Object.entries(buttons)) b.setAttribute("aria-pressed", String(t === type));
    clear(pane, actionForm(ctx, a, subject, found, preset, refresh, open));
    pane.querySelector("h3")?.focus();
  }
  for (const a of allowed) {
    const b = h("button", { type: "button", "aria-pressed": "false", "data-action": a.type,
      class: a.irreversible ? "danger-outline" : "" }, a.label, " ", h("span", { class: "art" }, a.art));
    b.addEventListener("click", () => open(a.type));
    buttons[a.type] = b;
    bar.append(b);
  }
  const onAct = (e) => {
    if (!section.isConnected) { document.removeEventListener("oblio:act", onAct); return; }
    open(e.detail.type, e.detail);
    section.scrollIntoView({ block: "start" });
  };
  document.addEventListener("oblio:act", onAct, { signal: ctx.signal });
  section.append(bar, pane);
  return section;
}

/** The action's own options: the nodes of the form and the body fields they make. */
function options(ctx, a, preset) {
  const dm = ctx.datamap;
  if (a.type === "access") {
    const email = h("input", { type: "email", name: "notify_email", autocomplete: "email" });
    return { nodes: [field("E-mail me when the archive is ready (optional)", email, "Your address, the requester's, not the person's.")],
      body: () => (email.value.trim() ? { notify_email: email.value.trim() } : {}) };
  }
  if (a.type === "anonymisation") {
    const all = checkbox("All tables", { checked: true, name: "all_tables" });
    const boxes = (dm?.tables || []).map((t) => checkbox(t.name.replaceAll("_", " "), { value: t.name, name: "tables" }));
    const list = h("fieldset", { class: "tables", disabled: true }, h("legend", {}, "Only these tables"), boxes.map((b) => b.wrap));
    all.input.addEventListener("change", () => { list.disabled = all.input.checked; });
    return { nodes: [all.wrap, list], body: () => {
      if (all.input.checked) return {};
      return { tables: boxes.filter((b) => b.input.checked).map((b) => b.input.value) };
    } };
  }
  if (a.type === "rectification") {
    const listId = "rectifiable";
    const datalist = h("datalist", { id: listId }, (dm?.rectifiable || []).map((n) => h("option", { value: n })));
    const rows = h("div", { class: "changes" });
    const addRow = (name = "", value = "") => {
      const n = h("input", { type: "text", list: listId, value: name, autocomplete: "off", name: "attribute" });
      const v = h("input", { type: "text", value, autocomplete: "off", name: "new_value" });
      const row = h("fieldset", { class: "row change" }, h("legend", { class: "visually-hidden" }, "A change"),
        field("Attribute", n), field("New value", v),
        h("div", { class: "field end" }, h("button", { type: "button", class: "small", onclick: () => { row.remove(); rows.dispatchEvent(new Event("input", { bubbles: true })); } }, "Remove")));
      rows.append(row);
      return n;
    };
    addRow(preset.attribute || "email");
    return { nodes: [datalist, h("p", { class: "hint" }, "An identity (email, phone, external_id) is changed in every attribute that holds it; any other name, in the attribute of that name."),
      rows, h("button", { type: "button", class: "small", onclick: () => addRow().focus() }, "Add a change")],
    body: () => {
      const changes = {};
      for (const row of rows.querySelectorAll(".change")) {
        const [n, v] = row.querySelectorAll("input");
        if (n.value.trim()) changes[n.value.trim()] = v.value;
      }
      return { changes };
    } };
  }
  if (a.type === "restriction") {
    const restrict = h("input", { type: "radio", name: "lift", value: "restrict", checked: !preset.lift, id: "restrict-set" });
    const lift = h("input", { type: "radio", name: "lift", value: "lift", checked: !!preset.lift, id: "restrict-lift" });
    return { nodes: [h("fieldset", {}, h("legend", {}, "Restriction"),
      h("div", { class: "check" }, restrict, h("label", { for: restrict.id }, "Restrict processing")),
      h("div", { class: "check" }, lift, h("label", { for: lift.id }, "Lift the restriction")))],
    body: () => (lift.checked ? { lift: true } : {}) };
  }
  if (a.type === "objection") {
    const chosen = preset.purposes || ["marketing"];
    const purposes = dm?.objection_purposes?.length ? dm.objection_purposes : ["marketing"];
    const boxes = purposes.map((p) => checkbox(p, { value: p, name: "purposes", checked: chosen.includes(p) }));
    return { nodes: [h("fieldset", {}, h("legend", {}, "Object to these purposes"), boxes.map((b) => b.wrap))],
      body: () => ({ purposes: boxes.filter((b) => b.input.checked).map((b) => b.input.value) }) };
  }
  return { nodes: [], body: () => ({}) };
}

const RULE_LABELS = { keep: "kept", null: "removed", mask: "masked", generalise: "generalised",
  hmac: "replaced by a keyed hash" };

function ruleLabel(rule) {
  if (rule.startsWith("pseudonym:")) return `pseudonym (${rule.slice(10)})`;
  return RULE_LABELS[rule] || rule;
}

function attributesView(attrs) {
  if (!attrs) return "—";
  if (Array.isArray(attrs)) return `sets ${attrs.join(", ")}`;
  const groups = {};
  for (const [name, rule] of Object.entries(attrs)) (groups[ruleLabel(rule)] ||= []).push(name);
  const head = Object.entries(groups).map(([g, names]) => `${names.length} ${g}`).join(", ");
  return h("details", {}, h("summary", {}, head),
    h("ul", { class: "rules" }, Object.entries(groups).map(([g, names]) => h("li", {}, h("strong", {}, `${g}: `), names.join(", ")))));
}

function happens(type, t) {
  if (!t.matched) return h("span", { class: "muted" }, "nothing found");
  switch (t.action) {
    case "delete": return ["restriction", "objection"].includes(type) ? "taken out (pending delivery deleted)" : badge("deleted", "bad");
    case "anonymise": return type === "erasure" ? badge("anonymised, shell kept", "warn") : badge("anonymised", "warn");
    case "read": return "exported";
    case "update": return "updated";
    case "flag": return "flagged as restricted";
    case "unflag": return "restriction flag lifted";
    case "none": return h("span", { class: "muted" }, "unchanged");
    default: return t.action;
  }
}

function totals(tables) {
  const t = { tables: 0, matched: 0, del: 0, anon: 0, upd: 0, files: 0 };
  for (const p of Object.values(tables)) {
    if (p.would_delete || p.would_anonymise || p.would_update || p.action === "read") t.tables += 1;
    t.matched += p.matched; t.del += p.would_delete; t.anon += p.would_anonymise;
    t.upd += p.would_update; t.files += p.files;
  }
  return t;
}

function allTotals(res) {
  const out = totals(res.tables);
  for (const p of Object.values(res.tenants || {})) {
    const c = totals(p.tables);
    for (const k of Object.keys(out)) out[k] += c[k];
  }
  return out;
}

function previewSentence(type, t, res) {
  if (!res.found) return "Nothing of this person was found: the request would change nothing.";
  const where = `in ${plural(t.tables, "table")}${Object.keys(res.tenants || {}).length ? ` (with ${Object.keys(res.tenants).join(", ")})` : ""}`;
  switch (type) {
    case "erasure": return `Erasing would delete ${plural(t.del, "item")} and anonymise ${plural(t.anon, "item")} (their shell kept for reporting) ${where}, and delete ${plural(t.files, "file")} with every version.`;
    case "anonymisation": return `Anonymising would rewrite ${plural(t.anon, "item")} and delete ${plural(t.del, "item")} ${where}, and delete ${plural(t.files, "file")}.`;
    case "access": return `The export would hold ${plural(t.matched, "item")} from ${plural(t.tables, "table")} and their files.`;
    case "rectification": return `Rectifying would update ${plural(t.upd, "item")} ${where}.`;
    case "restriction": return `It would update ${plural(t.upd, "item")} and take the person out of ${plural(t.del, "pending delivery", "pending deliveries")}.`;
    case "objection": return `It would take the person out of ${plural(t.del, "pending delivery", "pending deliveries")} and record the withdrawals.`;
    default: return "";
  }
}

function planTable(type, caption, tables) {
  const rows = Object.entries(tables).map(([name, t]) => ({ name, ...t }));
  return table(caption, [
    ["Table", (r) => r.name.replaceAll("_", " ")],
    ["Found", (r) => String(r.matched)],
    ["What happens", (r) => happens(type, r)],
    ["Files", (r) => (r.files ? `${r.files} deleted` : "—")],
    ["Attributes", (r) => (r.matched ? attributesView(r.attributes) : "—")],
  ], rows, { cls: "plan" });
}

function consequence(type, t, partial) {
  if (type === "erasure") {
    return `I have read the above and accept that this person's data be erased: ${plural(t.del, "item")} deleted and ${plural(t.anon, "item")} anonymised in ${plural(t.tables, "table")}, ${plural(t.files, "file")} deleted with every version, and the person added to the suppression list. This cannot be undone.`;
  }
  const remains = partial ? "The other tables are left as they are." : "The person will remain only as a pseudonym.";
  return `I have read the above and accept that the data be anonymised: ${plural(t.anon, "item")} rewritten by the rules above and ${plural(t.del, "item")} deleted in ${plural(t.tables, "table")}, ${plural(t.files, "file")} deleted. ${remains} This cannot be undone.`;
}

function exportRule(ctx, found, open) {
  const rule = found.export_before_anonymisation || { required: ctx.me.rules.require_export_before_anonymisation, export: null };
  if (!rule.required) return { ok: true, node: null };
  const go = h("button", { type: "button", class: "small", onclick: () => open("access") }, "Start an access export");
  if (rule.export) {
    return { ok: true, node: h("div", { class: "note" }, h("p", {},
      "This tenant requires an access export of the person before an anonymisation (so that they have their data first). Export ",
      h("a", { href: `#/requests/${rule.export.request_id}` }, rule.export.request_id),
      " is valid until ", timeEl(rule.export.expires_at), ": you may anonymise.")) };
  }
  return { ok: false, node: h("div", { class: "note warn", "data-testid": "export-required" },
    h("p", {}, h("strong", {}, "An export comes first. "),
      "This tenant requires an access export of the person that has not expired before an anonymisation (setting require_export_before_anonymisation), and there is none. File an access export, wait until it is ready, search the person again, then anonymise."),
    h("p", {}, can(ctx.me, "dsr:write") ? go : "Your key cannot file an access export (it needs dsr:write).")) };
}

function actionForm(ctx, a, subject, found, preset, refresh, open) {
  const { me } = ctx;
  const titleId = `act-${a.type}`;
  const opts = options(ctx, a, preset);
  const mayChildren = me.children_allowed && me.children.length > 0;
  const children = checkbox(`Also in the child tenants (${me.children.join(", ")})`, { name: "include_children" });
  const reason = h("input", { type: "text", name: "reason", maxlength: "1000", autocomplete: "off" });
  const optionBox = h("div", { class: "options" }, opts.nodes, mayChildren ? children.wrap : null,
    field("Reason (optional, kept with the request)", reason, "E.g. how and when the person asked. Do not type the person's identity here."));
  const previewBtn = h("button", { type: "submit", class: "primary" }, "Preview (dry run)");
  const errors = h("div");
  const preview = h("div", { class: "preview" });
  const runArea = h("div", { class: "run" });
  const form = h("form", { class: "action", "aria-labelledby": titleId, novalidate: true },
    h("h3", { id: titleId, tabindex: "-1" }, `${a.label} (${a.art})`),
    h("p", { class: "lead" }, a.intro),
    a.irreversible ? h("p", { class: "note warn" }, "Irreversible: the dry run below changes nothing; the run needs your explicit confirmation.") : null,
    optionBox, h("div", { class: "actions" }, previewBtn), errors, preview, runArea);

  const base = () => ({ type: a.type, subject, include_children: mayChildren && children.input.checked, ...opts.body() });
  let idem = null;
  const invalidate = () => {
    if (!preview.firstChild) return;
    clear(preview, h("p", { class: "muted" }, "The options changed: preview again before running."));
    runArea.replaceChildren();
    idem = null;
  };
  optionBox.addEventListener("input", invalidate);
  optionBox.addEventListener("change", invalidate);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    preview.setAttribute("aria-busy", "true");
    const res = await busy(previewBtn, () => api.post("requests", { ...base(), dry_run: true }), errors, "Preparing the preview…");
    preview.removeAttribute("aria-busy");
    if (!res) return;
    idem = newKey();
    const t = allTotals(res);
    const sentence = previewSentence(a.type, t, res);
    clear(preview,
      h("h4", { tabindex: "-1", id: `${titleId}-preview` }, "Preview ", badge("dry run: nothing changed", "info")),
      h("p", { class: "summary", "data-testid": "preview-summary" }, sentence),
      planTable(a.type, "Per table", res.tables),
      Object.entries(res.tenants || {}).map(([tenant, p]) => planTable(a.type, `In ${tenant}`, p.tables)));
    showRun(t, res);
    preview.querySelector("h4").focus();
    say(sentence);
  });

  function showRun(t, res) {
    const runErrors = h("div");
    const runBtn = h("button", { type: "button", class: a.irreversible ? "danger" : "primary", "data-testid": "run" }, a.run);
    let confirm = null;
    const nodes = [];
    if (a.type === "anonymisation") {
      const rule = exportRule(ctx, found, open);
      nodes.push(rule.node);
      if (!rule.ok) { clear(runArea, nodes); return; }
    }
    if (a.irreversible) {
      confirm = checkbox(consequence(a.type, t, !!opts.body().tables), { name: "confirm", "data-testid": "confirm" });
      confirm.wrap.classList.add("confirm");
      nodes.push(confirm.wrap);
      confirm.input.addEventListener("change", () => runErrors.replaceChildren());
    }
    runBtn.addEventListener("click", async () => {
      if (confirm && !confirm.input.checked) {
        runErrors.replaceChildren(errorBox({ message: `Not run: tick "I have read the above and accept…" first. ${a.label} cannot be undone.` }));
        say("Tick the confirmation first");
        confirm.input.focus();
        return;
      }
      const body = { ...base(), ...(reason.value.trim() ? { reason: reason.value.trim() } : {}), ...(a.irreversible ? { confirm: true } : {}) };
      runErrors.replaceChildren();
      runBtn.disabled = true;
      let filed;
      try {
        filed = await api.post("requests", body, { idempotencyKey: idem });
      } catch (err) {
        runBtn.disabled = false;
        runErrors.replaceChildren(errorBox(err));
        if (err instanceof ApiError && err.code === "export_required" && can(me, "dsr:write")) {
          runErrors.append(h("p", {}, h("button", { type: "button", class: "small", onclick: () => open("access") }, "Start an access export")));
        }
        say(err.message);
        return;
      }
      const id = filed.request_id || filed.id;
      const lock = () => { for (const el of form.querySelectorAll("input, select, button")) el.disabled = true; };
      lock();
      const followArea = h("div", { class: "follow" });
      clear(runArea, filed.duplicate_of_open_request
        ? h("p", { class: "note" }, "An open request of this type for this person already exists: following it instead of filing another.") : null,
      followArea);
      const done = await follow(ctx, id, followArea);
      if (done) {
        followArea.append(h("div", { class: "actions" },
          h("button", { type: "button", onclick: refresh }, "Search again"),
          h("a", { href: `#/requests/${id}`, class: "button" }, "Open the request")));
      }
    });
    nodes.push(h("div", { class: "actions" }, runBtn), runErrors);
    clear(runArea, nodes);
  }
  return form;
}

const STEPS = ["received", "queued", "planned", "completed"];

/** Poll a request until it leaves received/queued/running, showing its timeline live. */
export async function follow(ctx, id, area) {
  const progress = h("progress", { max: String(STEPS.length), value: "0", "aria-label": "Request progress" });
  const status = h("p", { class: "status", role: "status", "data-testid": "request-status" }, "Filed.");
  const timeline = h("div");
  const out = h("div");
  clear(area, h("h4", {}, "Request ", h("a", { href: `#/requests/${id}` }, h("code", {}, id))), progress, status, timeline, out);
  let r;
  try {
    for (;;) {
      r = await api.get(`requests/${id}`);
      const seen = new Set((r.timeline || []).map((e) => e.event));
      progress.value = STEPS.filter((s) => seen.has(s)).length;
      status.replaceChildren("Status: ", badge(r.status), RUNNING.includes(r.status) ? " … working" : "");
      timeline.replaceChildren(timelineList(r.timeline));
      if (!RUNNING.includes(r.status)) break;
      await sleep(700, ctx.signal);
    }
  } catch (err) {
    if (err.name === "AbortError") return null;
    out.replaceChildren(errorBox(err));
    return null;
  }
  progress.value = STEPS.length;
  say(`Request ${r.status.replaceAll("_", " ")}`);
  out.replaceChildren(outcome(r));
  return r;
}
