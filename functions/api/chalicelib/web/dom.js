// DOM helpers: every node is built with createElement and textContent, never from HTML
// strings, so nothing the API answers can run as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "checked" || k === "value" || k === "selected") el[k] = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let counter = 0;
export const uid = (prefix = "f") => `${prefix}-${++counter}`;

/** A labelled control: the label is tied to the input by id; a hint by aria-describedby. */
export function field(label, input, hint) {
  input.id = input.id || uid("in");
  const wrap = h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  if (hint) {
    const id = uid("hint");
    input.setAttribute("aria-describedby", id);
    wrap.append(h("p", { class: "hint", id }, hint));
  }
  return wrap;
}

export function checkbox(label, attrs = {}, hint) {
  const input = h("input", { type: "checkbox", ...attrs });
  input.id = input.id || uid("cb");
  const wrap = h("div", { class: "check" }, input, h("label", { for: input.id }, label));
  if (hint) {
    const id = uid("hint");
    input.setAttribute("aria-describedby", id);
    wrap.append(h("p", { class: "hint", id }, hint));
  }
  return { wrap, input };
}

export function select(options, attrs = {}) {
  return h("select", attrs, options.map(([value, label]) =>
    h("option", { value }, label ?? value)));
}

/** The API's error as it said it: status, code, message, the field it names. */
export function errorBox(err) {
  if (!err) return null;
  const box = h("div", { class: "error", role: "alert" });
  if (err.status) {
    box.append(h("p", {}, h("strong", {}, `${err.status} ${err.code || ""}`.trim()), ": ",
      err.message));
    const field = err.details && err.details.field;
    if (field) box.append(h("p", { class: "hint" }, `field: ${field}`));
  } else {
    box.append(h("p", {}, err.message || String(err)));
  }
  return box;
}

export function say(message) {
  const live = document.getElementById("live");
  if (live) { live.textContent = ""; setTimeout(() => { live.textContent = message; }, 30); }
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, fmtTime(iso)) : "—";
}

export function relDays(iso) {
  if (!iso) return "";
  const days = Math.round((new Date(iso).getTime() - Date.now()) / 86400000);
  if (days === 0) return "today";
  return days > 0 ? `in ${days} day${days === 1 ? "" : "s"}` : `${-days} day${days === -1 ? "" : "s"} ago`;
}

const TONE = {
  completed: "ok", valid: "ok", granted: "ok", completed_with_errors: "warn", failed: "bad",
  cancelled: "muted", withdrawn: "warn", running: "info", queued: "info", received: "info",
  validating: "info", awaiting_upload: "info", awaiting_verification: "warn",
  awaiting_approval: "warn", overdue: "bad", suppressed: "warn", restricted: "warn",
};

export function badge(text, tone) {
  return h("span", { class: `badge ${tone || TONE[text] || "muted"}` }, String(text).replaceAll("_", " "));
}

/** A table with a caption; columns are [header, row => cell] pairs. */
export function table(caption, columns, rows, { empty = "Nothing to show.", cls = "" } = {}) {
  if (!rows || rows.length === 0) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", { class: cls },
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell], i) => {
        const v = cell(row);
        return i === 0 ? h("th", { scope: "row" }, v) : h("td", {}, v);
      }))))));
}

/** A JSON value shown as it is, in a collapsible block. */
export function jsonBlock(summary, value, open = false) {
  return h("details", { class: "json", open },
    h("summary", {}, summary), h("pre", {}, JSON.stringify(value, null, 2)));
}

/** Key/value facts as a description list. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) =>
    [h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "—" : v)]));
}

/** Run `work` with the button disabled and marked busy; errors land in `errorSlot`. */
export async function busy(button, work, errorSlot, busyLabel) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if (busyLabel) button.textContent = busyLabel;
  if (errorSlot) errorSlot.replaceChildren();
  try {
    return await work();
  } catch (err) {
    if (errorSlot) { errorSlot.replaceChildren(errorBox(err)); say(err.message || String(err)); }
    else throw err;
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    if (busyLabel) button.textContent = label;
  }
}

export const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(t); reject(new DOMException("stopped", "AbortError")); }, { once: true });
});

/** Download a JSON value as a file (a blob URL: nothing leaves the browser). */
export function downloadJson(name, value) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(value, null, 2)], { type: "application/json" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function heading(text, level = 1) {
  return h(`h${level}`, { tabindex: "-1" }, text);
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : (many || one + "s")}`;
}
