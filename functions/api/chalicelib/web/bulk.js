// Bulk erasure: upload a CSV of people to forget, watch the job to its report, and the
// history of jobs. The file goes through the API (same origin), at most 4 MiB; larger files
// go by the job's presigned URL (`oblio bulk-erase`) or straight into the ingest bucket.

import { api, can, uploadFile } from "./api.js";
import { badge, busy, checkbox, clear, errorBox, facts, field, h, heading, say, sleep, table, timeEl } from "./dom.js";

const MAX = 4 * 1024 * 1024;
const ENDED = ["completed", "completed_with_errors", "failed"];

export function render(root, ctx) {
  const history = h("div");
  const follow = h("div", { class: "follow" });
  const parts = [heading("Bulk erasure"),
    h("p", { class: "lead" }, "Erase many people at once from a CSV: a header row naming email, phone and/or external_id (other columns are ignored), one person a line, UTF-8, comma or semicolon. Every erased person gets a request, a certificate and an audit entry; the report lists each line's outcome, never an identity.")];
  if (can(ctx.me, "dsr:erase")) parts.push(uploadForm(ctx, follow, () => loadHistory(history, ctx)));
  else parts.push(h("p", { class: "note" }, "Uploading a file needs a key with dsr:erase; this key can follow the jobs below."));
  parts.push(follow, history);
  clear(root, parts);
  loadHistory(history, ctx);
}

function uploadForm(ctx, follow, refresh) {
  const file = h("input", { type: "file", name: "file", accept: ".csv,text/csv", required: true });
  const dry = checkbox("Dry run: only report what would happen, erase nothing", { name: "dry_run" });
  const confirm = checkbox("I understand that every person the file names will be erased permanently: their items deleted (or anonymised where the data map keeps a shell), their files deleted, and they are added to the suppression list. This cannot be undone.", { name: "confirm", "data-testid": "bulk-confirm" });
  confirm.wrap.classList.add("confirm");
  dry.input.addEventListener("change", () => { confirm.wrap.hidden = dry.input.checked; });
  const go = h("button", { type: "submit", class: "danger" }, "Upload and erase");
  dry.input.addEventListener("change", () => { go.textContent = dry.input.checked ? "Upload and report" : "Upload and erase"; go.className = dry.input.checked ? "primary" : "danger"; });
  const errors = h("div");
  const bar = h("progress", { max: "1", value: "0", hidden: true, "aria-label": "Upload progress" });
  const form = h("form", { class: "card", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload a CSV"),
    field("CSV file", file, `At most ${MAX / 1024 / 1024} MiB through the console; use \`oblio bulk-erase FILE\` for larger files.`),
    dry.wrap, confirm.wrap, h("div", { class: "actions" }, go), bar, errors);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) { errors.replaceChildren(errorBox({ message: "Choose a CSV file first." })); file.focus(); return; }
    if (f.size > MAX) { errors.replaceChildren(errorBox({ message: `The file has ${f.size} bytes: through the console at most ${MAX}. Use \`oblio bulk-erase\` (the presigned upload) for larger files.` })); return; }
    if (!dry.input.checked && !confirm.input.checked) {
      errors.replaceChildren(errorBox({ message: "Not uploaded: tick the confirmation first, or choose a dry run." }));
      confirm.input.focus();
      return;
    }
    busy(go, async () => {
      const job = await api.post("bulk-erasures", { dry_run: dry.input.checked });
      bar.hidden = false;
      await uploadFile(`bulk-erasures/${job.job_id}/file`, f, (done, total) => { bar.value = done / total; });
      bar.value = 1;
      say("Uploaded; the job starts");
      form.reset();
      confirm.wrap.hidden = false;
      watch(ctx, job.job_id, follow, refresh);
    }, errors, "Uploading…");
  });
  return form;
}

function counters(job) {
  return facts([
    ["Status", badge(job.status)],
    ["Rows", `${job.rows_done} of ${job.rows_total || "?"}`],
    [job.dry_run ? "Would erase" : "Erased", String(job.dry_run ? job.would_erase : job.erased)],
    ["Not found", String(job.not_found)],
    ["Invalid", String(job.invalid)],
    ["Duplicates", String(job.duplicates)],
    ["Failed", String(job.failed)],
    job.ignored_columns?.length ? ["Ignored columns", job.ignored_columns.join(", ")] : null,
    job.message ? ["Message", job.message] : null,
    job.error ? ["Error", typeof job.error === "string" ? job.error : JSON.stringify(job.error)] : null,
  ]);
}

function reportLink(job) {
  return job.report_url ? h("a", { href: job.report_url, class: "button primary", "data-testid": "report", rel: "noreferrer" }, "Download the report (CSV)") : null;
}

async function watch(ctx, id, area, refresh) {
  const bar = h("progress", { max: "1", value: "0", "aria-label": "Job progress" });
  const state = h("div", { role: "status" });
  const outcome = h("div");
  clear(area, h("section", { class: "card", "aria-labelledby": "job-title" },
    h("h2", { id: "job-title", tabindex: "-1" }, "Job ", h("code", {}, id)), bar, state, outcome));
  area.querySelector("h2").focus();
  try {
    for (;;) {
      const job = await api.get(`bulk-erasures/${id}`);
      if (job.rows_total) { bar.max = job.rows_total; bar.value = job.rows_done; } else bar.removeAttribute("value");
      state.replaceChildren(counters(job));
      if (ENDED.includes(job.status)) {
        bar.max = 1; bar.value = 1;
        outcome.replaceChildren(h("p", { class: "summary", "data-testid": "bulk-done" }, `The job is ${job.status.replaceAll("_", " ")}.`), reportLink(job));
        say(`Bulk job ${job.status}`);
        refresh();
        return;
      }
      await sleep(800, ctx.signal);
    }
  } catch (err) {
    if (err.name !== "AbortError") outcome.replaceChildren(errorBox(err));
  }
}

async function loadHistory(area, ctx) {
  try {
    const page = await api.get("bulk-erasures", { limit: 20 });
    clear(area, h("section", { class: "card", "aria-labelledby": "jobs-title" },
      h("h2", { id: "jobs-title" }, "Recent jobs"),
      table(null, [
        ["Job", (j) => h("button", { type: "button", class: "link", onclick: () => watch(ctx, j.job_id, area.previousElementSibling, () => loadHistory(area, ctx)) }, h("code", {}, j.job_id))],
        ["Status", (j) => h("span", {}, badge(j.status), j.dry_run ? [" ", badge("dry run", "info")] : null)],
        ["Created", (j) => timeEl(j.created_at)],
        ["Rows", (j) => `${j.rows_done}/${j.rows_total}`],
        ["Erased", (j) => String(j.dry_run ? j.would_erase : j.erased)],
        ["Not found", (j) => String(j.not_found)],
        ["Invalid", (j) => String(j.invalid)],
        ["Report", (j) => (j.report_url ? h("a", { href: j.report_url, rel: "noreferrer" }, "CSV") : "—")],
      ], page.items, { empty: "No bulk job yet." })));
  } catch (err) {
    clear(area, errorBox(err));
  }
}
