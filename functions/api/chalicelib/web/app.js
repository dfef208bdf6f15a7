// The console's shell: sign-in, navigation, and a hash router (#/person, #/requests/<id>,
// ...). Identities never go into the hash, the history or any storage: they live in memory.

import { api, can, session, whenSignedOut } from "./api.js";
import { clear, errorBox, field, h, heading, say } from "./dom.js";
import * as person from "./person.js";
import * as requests from "./requests.js";
import * as bulk from "./bulk.js";
import * as retention from "./retention.js";
import * as audit from "./audit.js";
import * as settings from "./settings.js";

const VIEWS = [
  { path: "person", label: "Find a person", view: person },
  { path: "requests", label: "Requests", view: requests, scope: "dsr:read" },
  { path: "bulk", label: "Bulk erasure", view: bulk, scope: "dsr:read" },
  { path: "retention", label: "Retention", view: retention, scope: "dsr:read" },
  { path: "audit", label: "Audit", view: audit, scope: "audit:read" },
  { path: "settings", label: "Settings and keys", view: settings, scope: "admin" },
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const ctx = { me: null, datamap: null, controller: null };

function signOut(message) {
  session.clear();
  ctx.me = null;
  ctx.datamap = null;
  person.forget();
  nav.hidden = true;
  who.hidden = true;
  renderSignIn(message);
}

whenSignedOut((err) => signOut(err.message));

function renderSignIn(message) {
  document.title = "Sign in · oblio console";
  const input = h("input", { type: "password", name: "api_key", autocomplete: "off",
    spellcheck: "false", required: true, autocapitalize: "off" });
  const errors = h("div");
  if (message) errors.append(errorBox({ message }));
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "card narrow", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", tabindex: "-1" }, "Sign in"),
    h("p", {}, "Sign in with your tenant's API key. The console keeps it for this browser tab only (session storage): closing the tab signs you out, and it is never put in a cookie or a URL."),
    field("API key", input, "Starts with obl_. `make run` prints the demo tenant's key."),
    errors, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    errors.replaceChildren();
    try {
      const me = await api.get("whoami", null, { key: input.value.trim() });
      session.set(input.value.trim());
      await start(me);
    } catch (err) {
      errors.replaceChildren(errorBox(err));
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, form);
  input.focus();
}

async function start(me) {
  ctx.me = me || await api.get("whoami");
  ctx.datamap = can(ctx.me, "dsr:read") ? await api.get("datamap") : null;
  renderChrome();
  if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/person";
  else route();
}

function renderChrome() {
  const me = ctx.me;
  clear(nav, h("ul", {}, VIEWS.filter((v) => !v.scope || can(me, v.scope)).map((v) =>
    h("li", {}, h("a", { href: `#/${v.path}`, "data-path": v.path }, v.label)))));
  const scopes = me.scopes.join(", ");
  clear(who,
    h("span", { class: "tenant" }, me.tenant_name, " ", h("span", { class: "muted" }, `(${me.tenant_id})`)),
    h("span", { class: "scopes", title: "the scopes of this key" }, scopes),
    h("button", { type: "button", class: "link", onclick: () => signOut() }, "Sign out"));
  nav.hidden = false;
  who.hidden = false;
}

function route() {
  if (!ctx.me) return;
  const [, path = "person", ...rest] = (location.hash || "#/person").split("/");
  const entry = VIEWS.find((v) => v.path === path) || VIEWS[0];
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.path === entry.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  ctx.controller?.abort();
  ctx.controller = new AbortController();
  const view = { ...ctx, signal: ctx.controller.signal, args: rest.map(decodeURIComponent) };
  document.title = `${entry.label} · oblio console`;
  const root = h("div", { class: "view" });
  clear(main, root);
  try {
    entry.view.render(root, view);
  } catch (err) {
    root.append(heading(entry.label), errorBox(err));
  }
  const title = root.querySelector("h1");
  (title || main).focus();
  say(document.title);
}

window.addEventListener("hashchange", route);

// the skip link moves the focus to the content without touching the hash: "#main" is not a
// route, and following it would render the first page again (losing a search's results)
document.querySelector("a.skip")?.addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

async function boot() {
  if (!session.key) { renderSignIn(); return; }
  try {
    await start();
  } catch (err) {
    signOut(err.message);
  }
}

boot();
