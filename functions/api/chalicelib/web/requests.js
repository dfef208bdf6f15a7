// Requests: the history (overdue first, filters, pages) and one request (timeline,
// outcome, certificate, verification, AWS calls; extend, cancel, retry, approve, deny).

import { api, can } from "./api.js";
import { follow } from "./actions.js";
import {
  badge, busy, checkbox, clear, errorBox, facts, field, h, heading, relDays, select, table, timeEl,
} from "./dom.js";
import { ENDED, RUNNING, outcome, timelineList } from "./results.js";

const TYPES = ["access", "erasure", "anonymisation", "rectification", "restriction", "objection"];
const STATUSES = ["received", "awaiting_verification", "awaiting_approval", "queued", "running", "finishing",
  "completed", "completed_with_errors", "failed", "cancelled"];
let filters = { type: "", status: "", overdue: false };

export function render(root, ctx) {
  if (ctx.args[0]) { detail(root, ctx, ctx.args[0]); return; }
  const type = select([["", "any type"], ...TYPES.map((t) => [t, t])], { name: "type" });
  const status = select([["", "any status"], ...STATUSES.map((s) => [s, s.replaceAll("_", " ")])], { name: "status" });
  type.value = filters.type;
  status.value = filters.status;
  const overdue = checkbox("Overdue only", { checked: filters.overdue, name: "overdue" });
  const apply = h("button", { type: "submit", class: "primary" }, "Show");
  const approvals = h("button", { type: "button", class: "small" }, "Awaiting approval");
  const errors = h("div");
  const list = h("div");
  const form = h("form", { class: "card filters", "aria-label": "Filter requests" },
    h("div", { class: "row" }, field("Type", type), field("Status", status),
      h("div", { class: "field end" }, overdue.wrap), h("div", { class: "field end" }, apply)),
    h("p", {}, approvals, " ", h("span", { class: "hint" }, "self-service requests verified by the person and waiting for you")), errors);
  approvals.addEventListener("click", () => { status.value = "awaiting_approval"; type.value = ""; overdue.input.checked = false; form.requestSubmit(); });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    filters = { type: type.value, status: status.value, overdue: overdue.input.checked };
    load(list, ctx, errors, apply);
  });
  clear(root, heading("Requests"),
    h("p", { class: "lead" }, "Every request of the tenant, overdue ones first. A request is due one month after receipt (Art. 12(3)); it can be extended by up to two months with a reason."),
    form, list);
  load(list, ctx, errors, apply);
}

function rowsTable(rows) {
  return table(null, [
    ["Request", (r) => h("a", { href: `#/requests/${r.id}` }, h("code", {}, r.id))],
    ["Type", (r) => r.type],
    ["Status", (r) => badge(r.status)],
    ["Received", (r) => timeEl(r.created_at)],
    ["Due", (r) => h("span", {}, timeEl(r.due_at), " ", r.overdue ? badge("overdue") : h("span", { class: "muted" }, ENDED.includes(r.status) ? "" : relDays(r.due_at)))],
    ["Subject", (r) => h("code", { class: "ref" }, (r.subject_ref || "").slice(0, 14) + "…")],
  ], rows, { empty: "No request matches.", cls: "requests" });
}

let generation = 0;

async function load(list, ctx, errors, button) {
  const seen = new Set();
  const rows = [];
  const mine = ++generation; // a slower, older load must not paint over a newer one
  list.setAttribute("aria-busy", "true");
  clear(list, h("p", { class: "muted", role: "status" }, "Loading the requests…"));
  await busy(button, async () => {
    const q = { type: filters.type, status: filters.status, limit: 50 };
    // overdue first: the open requests past their due date, then the history
    const overdue = filters.overdue || ["completed", "completed_with_errors", "cancelled"].includes(filters.status)
      ? { items: [] } : await api.get("requests", { ...q, overdue: "true", limit: 500 });
    const page = await api.get("requests", { ...q, overdue: filters.overdue ? "true" : undefined });
    for (const r of [...overdue.items, ...page.items]) if (!seen.has(r.id)) { seen.add(r.id); rows.push(r); }
    paint(page.next_cursor);
  }, errors, "Loading…");
  list.removeAttribute("aria-busy");

  function paint(cursor) {
    if (mine !== generation) return;
    const more = cursor ? h("button", { type: "button" }, "Load more") : null;
    const moreErrors = h("div");
    more?.addEventListener("click", () => busy(more, async () => {
      const page = await api.get("requests", { type: filters.type, status: filters.status, overdue: filters.overdue ? "true" : undefined, limit: 50, cursor });
      for (const r of page.items) if (!seen.has(r.id)) { seen.add(r.id); rows.push(r); }
      paint(page.next_cursor);
    }, moreErrors, "Loading…"));
    const n = rows.filter((r) => r.overdue).length;
    clear(list, h("section", { class: "card", "aria-labelledby": "list-title" },
      h("h2", { id: "list-title" }, `${rows.length} request${rows.length === 1 ? "" : "s"}`, n ? [" ", badge(`${n} overdue`, "bad")] : ""),
      rowsTable(rows), more, moreErrors));
  }
}

function detail(root, ctx, id) {
  const body = h("div");
  clear(root, h("p", {}, h("a", { href: "#/requests" }, "← All requests")), heading(`Request ${id}`), body);
  const errors = h("div");
  body.append(errors);
  api.get(`requests/${id}`).then((r) => show(body, ctx, r)).catch((err) => errors.replaceChildren(errorBox(err)));
}

function show(body, ctx, r) {
  const parts = [
    h("section", { class: "card", "aria-label": "Facts" },
      h("p", { class: "badges" }, badge(r.type, "info"), " ", badge(r.status), r.overdue ? [" ", badge("overdue")] : null),
      facts([
        ["Subject", h("code", {}, r.subject_ref)],
        ["Received", timeEl(r.created_at)],
        ["Due", h("span", {}, timeEl(r.due_at), " ", h("span", { class: "muted" }, ENDED.includes(r.status) ? "" : relDays(r.due_at)))],
        ["Completed", timeEl(r.completed_at)],
        ["Reason", r.reason],
        ["Extended", r.extension ? `by ${r.extension.months} month(s): ${r.extension.reason}` : null],
        ["Attempt", String(r.attempt)],
        ["Child tenants", r.include_children ? "included" : "no"],
      ])),
    operations(body, ctx, r),
    h("section", { class: "card", "aria-labelledby": "tl-title" }, h("h2", { id: "tl-title" }, "Timeline"), timelineList(r.timeline)),
  ];
  const result = h("section", { class: "card", "aria-labelledby": "res-title" }, h("h2", { id: "res-title" }, "Outcome"));
  if (RUNNING.includes(r.status)) {
    const area = h("div");
    result.append(area);
    follow(ctx, r.id, area).then((done) => { if (done && body.isConnected) show(body, ctx, done); });
  } else if (r.result || r.error) {
    result.append(outcome(r));
  } else {
    result.append(h("p", { class: "muted" }, "No outcome yet."));
  }
  parts.push(result);
  clear(body, parts);
}

function operations(body, ctx, r) {
  const { me } = ctx;
  const errors = h("div");
  const wrap = h("section", { class: "card ops", "aria-labelledby": "ops-title" }, h("h2", { id: "ops-title" }, "Operations"));
  const buttons = h("div", { class: "actions" });
  const forms = h("div");
  const reload = (next) => show(body, ctx, next);
  const write = can(me, "dsr:write");
  const erase = can(me, "dsr:erase");
  if (write && !ENDED.includes(r.status)) {
    const months = select([["1", "1 month"], ["2", "2 months"]], { name: "months" });
    const reason = h("input", { type: "text", name: "extend_reason", required: true, maxlength: "1000" });
    const go = h("button", { type: "submit" }, "Extend the due date");
    const f = h("form", { class: "inline", "aria-label": "Extend" }, h("div", { class: "row" },
      field("Extend by", months), h("div", { class: "field grow" }, field("Reason (required)", reason)), h("div", { class: "field end" }, go)));
    f.addEventListener("submit", (e) => { e.preventDefault(); busy(go, async () => reload(await api.post(`requests/${r.id}/extend`, { months: Number(months.value), reason: reason.value })), errors, "Extending…"); });
    forms.append(f);
    const cancel = h("button", { type: "button", class: "danger-outline" }, "Cancel the request");
    cancel.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "danger" }, "Yes, cancel it");
      const no = h("button", { type: "button", onclick: () => ask.remove() }, "Keep it");
      const ask = h("div", { class: "note warn", role: "group", "aria-label": "Confirm cancellation" },
        h("p", {}, "Cancelling stops the request. Work already done on some tables is not undone."), h("div", { class: "actions" }, yes, no));
      yes.addEventListener("click", () => busy(yes, async () => reload(await api.post(`requests/${r.id}/cancel`)), errors, "Cancelling…"));
      forms.append(ask);
      yes.focus();
    });
    buttons.append(cancel);
  }
  if (write && ["failed", "completed_with_errors"].includes(r.status)) {
    const retry = h("button", { type: "button", class: "primary" }, "Retry from where it failed");
    retry.addEventListener("click", () => busy(retry, async () => reload(await api.post(`requests/${r.id}/retry`)), errors, "Retrying…"));
    buttons.append(retry);
  }
  if (r.status === "awaiting_approval" && (r.type === "erasure" ? erase : write)) {
    const approve = h("button", { type: "button", class: r.type === "erasure" ? "danger" : "primary" }, r.type === "erasure" ? "Approve: erase permanently" : "Approve");
    approve.addEventListener("click", () => busy(approve, async () => reload(await api.post(`requests/${r.id}/approve`)), errors, "Approving…"));
    const reason = h("input", { type: "text", name: "deny_reason", required: true, maxlength: "1000" });
    const deny = h("button", { type: "submit", class: "danger-outline" }, "Deny");
    const f = h("form", { class: "inline", "aria-label": "Deny" }, h("div", { class: "row" },
      h("div", { class: "field grow" }, field("Reason the person is told (Art. 12(4))", reason)), h("div", { class: "field end" }, deny)));
    f.addEventListener("submit", (e) => { e.preventDefault(); busy(deny, async () => reload(await api.post(`requests/${r.id}/deny`, { reason: reason.value })), errors, "Denying…"); });
    buttons.append(approve);
    forms.append(f);
  }
  if (!buttons.childNodes.length && !forms.childNodes.length) {
    wrap.append(h("p", { class: "muted" }, ENDED.includes(r.status) ? `The request is ${r.status.replaceAll("_", " ")}: nothing more to do.` : "This key cannot change the request."));
  }
  wrap.append(buttons, forms, errors);
  return wrap;
}
