// Audit: the tenant's hash-chained log, newest first, page by page, and its verification.

import { api } from "./api.js";
import { badge, busy, clear, errorBox, h, heading, jsonBlock, say, table, timeEl } from "./dom.js";

export function render(root, ctx) {
  const verdict = h("div", { role: "status", "data-testid": "audit-verdict" });
  const verify = h("button", { type: "button", class: "primary" }, "Verify the chain");
  const errors = h("div");
  const rows = [];
  const list = h("div");
  const more = h("button", { type: "button", hidden: true }, "Older entries");
  const moreErrors = h("div");
  let cursor = null;

  // one call checks a part of a long chain and answers a cursor to go on from: the chain is
  // called intact only once the last page (the one that checks the head) says so
  async function whole() {
    let v = await api.get("audit/verify");
    while (v.valid && v.next_cursor) {
      clear(verdict, h("p", { class: "note" }, `Checked ${v.entries} entries so far…`));
      v = await api.get("audit/verify", { cursor: v.next_cursor });
    }
    return v;
  }

  async function check() {
    const v = await busy(verify, whole, errors, "Verifying…");
    if (!v) return;
    clear(verdict, h("p", { class: v.valid ? "note ok" : "note bad" },
      v.valid ? badge("valid", "ok") : badge("broken", "bad"), " ",
      v.valid ? `The chain of ${v.entries} entries is intact: no entry was removed or edited.`
        : `The chain is broken at entry ${v.first_broken}: an entry was removed or edited.`));
    say(v.valid ? "Audit chain valid" : "Audit chain broken");
  }

  async function page() {
    const p = await busy(more, () => api.get("audit", { limit: 25, cursor }), moreErrors, "Loading…");
    if (!p) return;
    rows.push(...p.items);
    cursor = p.next_cursor;
    more.hidden = !cursor;
    clear(list, table(null, [
      ["Entry", (e) => h("code", {}, e.id)],
      ["When", (e) => timeEl(e.at)],
      ["Action", (e) => e.action.replaceAll("_", " ")],
      ["Actor", (e) => h("code", { class: "ref" }, e.actor || "—")],
      ["Request", (e) => (e.request_id ? h("a", { href: `#/requests/${e.request_id}` }, h("code", {}, e.request_id)) : "—")],
      ["Details", (e) => jsonBlock("details", { subject_ref: e.subject_ref, ...e.details, hash: e.hash, prev_hash: e.prev_hash })],
    ], rows, { empty: "No audit entry yet.", cls: "audit" }));
  }

  verify.addEventListener("click", check);
  more.addEventListener("click", page);
  clear(root, heading("Audit"),
    h("p", { class: "lead" }, "Every search, dry run, request, setting and sweep leaves an entry; each holds the hash of the one before, so that a removed or edited entry breaks the chain (Art. 5(2)). Subjects appear only as their reference."),
    h("section", { class: "card", "aria-label": "Verification" }, h("div", { class: "actions" }, verify), verdict, errors),
    h("section", { class: "card", "aria-labelledby": "log-title" }, h("h2", { id: "log-title" }, "Log, newest first"), list, more, moreErrors));
  check();
  page();
  void ctx;
}
