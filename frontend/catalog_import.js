// Catalog import (ZIP of photos + CSV) with a progress bar and per-row problems, and the notices shown
// on every tab while the catalog is empty (species and individuals come from the catalog) or while
// the server has no API keys (writes refused).
import { ApiError, apiKey } from "./api.js";
import { $, announce, h, progressRow, replace } from "./dom.js";
import { showModelLine } from "./model_line.js";

const NDJSON = "application/x-ndjson";

export const TEMPLATE_URL = "/v1/catalog/import/template.csv";

export function initImport(onImported) {
  $("#import-template").href = TEMPLATE_URL; // set here: index.html links only to its own files
  $("#import-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runImport(onImported);
  });
  refreshEmptyNotice();
}

/** Show or hide the empty-catalog and no-keys notices from `GET /v1/models`. */
export async function refreshEmptyNotice() {
  const notice = $("#catalog-empty-notice");
  try {
    const response = await fetch("/v1/models", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const body = await response.json();
    showModelLine(body);
    $("#no-keys-notice").hidden = body?.write_enabled !== false;
    const empty = (body?.catalog?.images ?? 1) === 0;
    notice.hidden = !empty;
    if (empty) $("#import-card").open = true;
  } catch {
    /* the notice is advice; a failed look leaves it as it is */
  }
}

const setProgress = progressRow("import");

function errorOf(status, text) {
  try {
    const err = JSON.parse(text).error;
    if (err) return new ApiError(status, err.code, err.message, err.details);
  } catch { /* not JSON */ }
  if (status === 0) return new ApiError(0, "network", "The service could not be reached.");
  return new ApiError(status, `http_${status}`, `The service answered HTTP ${status}.`);
}

/**
 * POST the form and follow the NDJSON progress lines: upload progress first (0-50 %), then the
 * service's `{"event": "progress", done, total}` lines (50-100 %). Resolves with the result line.
 */
function postImport(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    let seen = 0;
    let result = null;
    let failure = null;
    const readLines = () => {
      const text = xhr.responseText || "";
      const end = text.lastIndexOf("\n");
      if (end < seen) return;
      for (const line of text.slice(seen, end).split("\n")) {
        if (!line.trim()) continue;
        const event = JSON.parse(line);
        if (event.event === "progress") onProgress({ phase: "enrol", done: event.done, total: event.total });
        else if (event.event === "result") result = event;
        else if (event.event === "error") failure = new ApiError(500, event.error.code, event.error.message, event.error.details);
      }
      seen = end + 1;
    };
    xhr.open("POST", "/v1/catalog/import");
    xhr.setRequestHeader("Accept", NDJSON);
    const key = apiKey.get();
    if (key) xhr.setRequestHeader("X-API-Key", key);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress({ phase: "upload", fraction: event.loaded / event.total });
    };
    xhr.onprogress = () => { if (xhr.status === 200) readLines(); };
    xhr.onload = () => {
      if (xhr.status !== 200) return reject(errorOf(xhr.status, xhr.responseText));
      try { readLines(); } catch (err) { return reject(err); }
      if (failure) return reject(failure);
      if (!result) return reject(new ApiError(500, "incomplete", "The import ended without a result."));
      resolve(result);
    };
    xhr.onerror = () => reject(errorOf(0, ""));
    xhr.send(form);
  });
}

async function runImport(onImported) {
  const archive = $("#import-archive").files[0];
  const manifest = $("#import-csv").files[0];
  const out = $("#import-result");
  replace($("#import-error"));
  replace(out);
  if (!archive || !manifest) {
    replace($("#import-error"), h("p", { class: "error", text: "Choose the ZIP of photos and the CSV first." }));
    return;
  }
  if (!apiKey.get()) {
    replace($("#import-error"), h("p", { class: "error", text: "Importing needs the reviewer API key (top right): the server's WHALES_API_KEYS." }));
    $("#api-key").focus();
    return;
  }
  const form = new FormData();
  form.append("archive", archive, archive.name);
  form.append("manifest", manifest, manifest.name);
  const button = $("#import-start");
  button.disabled = true;
  setProgress(0, "Uploading…");
  try {
    const result = await postImport(form, (p) => {
      if (p.phase === "upload") setProgress(p.fraction * 0.5, `Uploading… ${Math.round(p.fraction * 100)} %`);
      else setProgress(0.5 + (p.total ? 0.5 * p.done / p.total : 0.5), `Enrolled ${p.done} of ${p.total} photos`);
    });
    setProgress(1, "Done");
    showResult(out, result);
    announce(`Import finished: ${result.summary.enrolled} photos enrolled, ${result.summary.skipped} rows skipped`);
    await refreshEmptyNotice();
    if (onImported) onImported();
  } catch (err) {
    setProgress(false);
    replace($("#import-error"), h("p", { class: "error", text: err.message }));
  } finally {
    button.disabled = false;
  }
}

function showResult(out, result) {
  const s = result.summary;
  const stats = [["Rows", s.rows], ["Enrolled", s.enrolled], ["Already in the catalog", s.already_present],
    ["Skipped", s.skipped], ["New individuals", s.individuals_created], ["Seconds", s.seconds]];
  replace(out,
    h("dl", { class: "stats", id: "import-summary" }, stats.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])),
    result.problems.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "data", id: "import-problems" },
        h("caption", { text: "Rows not imported: fix them in the sheet and import again (enrolled photos are not repeated)" }),
        h("thead", {}, h("tr", {}, ["Line", "Column", "File", "Problem"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, result.problems.map((p) => h("tr", {},
          h("td", { class: "num", text: String(p.line) }), h("td", { text: p.column || "—" }),
          h("td", {}, h("span", { class: "file", text: p.filename || "—" })),
          h("td", { text: `${p.message} (${p.code})` }))))))
      : h("p", { class: "muted", text: "Every row was imported." }));
}
