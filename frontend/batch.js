// Batch tab: a ZIP or many photos -> progress, sortable/filterable table, species chart, downloads.
import { api } from "./api.js";
import { barChart } from "./chart.js";
import { $, announce, dropZone, h, num, pct, progressRow, replace, saveBlob } from "./dom.js";
import { learnSpecies, speciesNames } from "./species.js";

const CHUNK = 8; // loose photos are sent a few at a time, so the bar shows real progress

const COLUMNS = [
  { key: "file", label: "File" },
  { key: "status", label: "Status" },
  { key: "species", label: "Species" },
  { key: "individual", label: "Individual" },
  { key: "isNew", label: "New?" },
  { key: "probability", label: "Confidence", numeric: true },
  { key: "cetacean", label: "Cetacean score", numeric: true },
  { key: "note", label: "Notes" },
  { key: "review", label: "Review" },
];

const state = { rows: [], summary: null, sortKey: "file", sortDir: 1, batchIds: [] };

export function initBatch() {
  dropZone($("#batch-drop"), $("#batch-file"), run);
  const headRow = $("#batch-table thead tr");
  for (const col of COLUMNS) {
    headRow.append(h("th", { scope: "col", "aria-sort": col.key === state.sortKey ? "ascending" : "none", dataset: { key: col.key } },
      h("button", { type: "button", class: "sort", onclick: () => sortBy(col.key) }, col.label, h("span", { class: "sort-icon", "aria-hidden": "true" }))));
  }
  for (const id of ["#batch-filter", "#batch-status", "#batch-species"]) $(id).addEventListener("input", renderTable);
  $("#batch-csv").addEventListener("click", downloadBatchCsv);
  $("#export-csv").addEventListener("click", () => serverExport("csv", "predictions.csv"));
  $("#export-dwca").addEventListener("click", () => serverExport("dwca", "predictions-dwca.zip"));
}

function toRow(r) {
  learnSpecies(r);
  const { common, latin } = speciesNames(r.species, r);
  return {
    file: String(r.image_ind ?? ""),
    status: r.rejected ? "rejected" : "accepted",
    speciesKey: r.rejected ? "" : r.species || "unknown",
    species: r.rejected ? "" : common,
    latin: r.rejected ? "" : latin,
    individual: r.individual_id || "",
    isNew: r.rejected || r.is_new_individual == null ? "" : r.is_new_individual ? "yes" : "no",
    probability: typeof r.probability === "number" ? r.probability : null,
    cetacean: typeof r.cetacean_score === "number" ? r.cetacean_score : null,
    note: r.rejected ? r.rejection_reason || "rejected" : (r.warnings || []).join("; "),
    raw: r,
  };
}

function errorRow(e) {
  return { file: String(e.image_ind ?? ""), status: e.code === "skipped" ? "skipped" : "failed", speciesKey: "", species: "", latin: "", individual: "",
    isNew: "", probability: null, cetacean: null, note: e.message || e.code || "failed", raw: e };
}

const setProgress = progressRow("batch");

async function run(files) {
  replace($("#batch-error"));
  const zips = files.filter((f) => /\.zip$/i.test(f.name));
  if (zips.length && files.length > 1) {
    replace($("#batch-error"), h("p", { class: "error", text: "Choose either one ZIP archive or several photos, not both." }));
    return;
  }
  const chunks = zips.length ? [files] : [];
  if (!zips.length) for (let i = 0; i < files.length; i += CHUNK) chunks.push(files.slice(i, i + CHUNK));
  const total = zips.length ? null : files.length;
  state.rows = [];
  state.batchIds = [];
  state.summary = { images: 0, accepted: 0, rejected: 0, failed: 0, skipped: 0, seconds: 0 };
  $("#batch-drop").setAttribute("aria-busy", "true");
  let done = 0;
  try {
    for (const chunk of chunks) {
      const answer = await api.predictBatch(chunk, (fraction) => {
        if (total === null) {
          setProgress(fraction === null ? null : fraction, fraction === null ? "Processing the archive…" : `Uploading… ${Math.round(fraction * 100)} %`);
        } else {
          const f = fraction === null ? 0.5 : fraction * 0.5; // upload is half of each chunk's work
          setProgress((done + f * chunk.length) / total, `Processed ${done} of ${total} photos…`);
        }
      });
      done += chunk.length;
      if (total !== null) setProgress(done / total, `Processed ${done} of ${total} photos…`);
      if (answer.summary?.batch_id) state.batchIds.push(answer.summary.batch_id);
      state.rows.push(...(answer.results || []).map(toRow), ...(answer.errors || []).map(errorRow));
      for (const k of Object.keys(state.summary)) state.summary[k] += Number(answer.summary?.[k] || 0);
    }
    setProgress(1, "Done.");
    setTimeout(() => setProgress(false), 1500);
    render();
    announce(`Batch done: ${state.summary.images} photos, ${state.summary.accepted} accepted, ${state.summary.rejected} rejected, ${state.summary.failed} failed.`);
  } catch (err) {
    setProgress(false);
    replace($("#batch-error"), h("p", { class: "error", text: err.message }));
    if (state.rows.length) render();
  } finally {
    $("#batch-drop").removeAttribute("aria-busy");
  }
}

function render() {
  $("#batch-results").hidden = false;
  const s = state.summary;
  replace($("#batch-summary"), ...[["Photos", s.images], ["Accepted", s.accepted], ["Rejected", s.rejected], ["Failed", s.failed],
    ["Skipped", s.skipped], ["Seconds", num(s.seconds, 1)]].map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: v }))));
  const species = new Map();
  for (const r of state.rows) if (r.speciesKey) species.set(r.speciesKey, r.species);
  replace($("#batch-species"), h("option", { value: "", text: "All" }),
    [...species].sort((a, b) => a[1].localeCompare(b[1])).map(([k, v]) => h("option", { value: k, text: v })));
  renderChart();
  renderTable();
}

function renderChart() {
  const counts = new Map();
  for (const r of state.rows) {
    if (r.status === "skipped") continue;
    const label = r.status === "accepted" ? r.species : r.status === "rejected" ? "Rejected (not a cetacean)" : "Failed";
    counts.set(label, (counts.get(label) || 0) + 1);
  }
  const rows = [...counts].map(([label, value]) => ({ label, value,
    cls: label.startsWith("Rejected") ? "rejected" : label === "Failed" ? "failed" : "" }))
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
  const width = Math.min(640, Math.max(300, $("#batch-chart").clientWidth || 600));
  replace($("#batch-chart"), rows.length ? barChart(rows, "Photos per species", width) : h("p", { class: "muted", text: "No results." }));
}

function sortBy(key) {
  state.sortDir = state.sortKey === key ? -state.sortDir : 1;
  state.sortKey = key;
  for (const th of $("#batch-table thead tr").children) {
    th.setAttribute("aria-sort", th.dataset.key === key ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
  }
  renderTable();
}

function visibleRows() {
  const q = $("#batch-filter").value.trim().toLowerCase();
  const status = $("#batch-status").value;
  const species = $("#batch-species").value;
  const col = COLUMNS.find((c) => c.key === state.sortKey);
  return state.rows
    .filter((r) => (!status || r.status === status) && (!species || r.speciesKey === species))
    .filter((r) => !q || [r.file, r.species, r.latin, r.individual, r.speciesKey, r.note].some((v) => v.toLowerCase().includes(q)))
    .sort((a, b) => {
      const x = a[state.sortKey], y = b[state.sortKey];
      const primary = col?.numeric ? (x ?? -1) - (y ?? -1) : String(x).localeCompare(String(y), undefined, { numeric: true });
      // ties fall back to the file name, so reversing the direction reverses the whole table
      return (primary || a.file.localeCompare(b.file, undefined, { numeric: true })) * state.sortDir;
    });
}

function renderTable() {
  const rows = visibleRows();
  replace($("#batch-table tbody"), rows.map((r) => h("tr", { class: `status-${r.status}` },
    h("td", {}, h("span", { class: "file", text: r.file })),
    h("td", {}, h("span", { class: `badge status ${r.status}`, text: r.status })),
    h("td", {}, r.species, r.latin ? h("i", { class: "latin", text: ` ${r.latin}` }) : null),
    h("td", {}, r.individual ? h("a", { href: `#catalog/${encodeURIComponent(r.individual)}` }, h("code", { text: r.individual })) : ""),
    h("td", { text: r.isNew }),
    h("td", { class: "num", text: r.probability === null ? "—" : pct(r.probability) }),
    h("td", { class: "num", text: r.cetacean === null ? "—" : pct(r.cetacean) }),
    h("td", { class: "note", text: r.note }),
    h("td", {}, r.raw.prediction_id ? h("a", { class: "review-link",
      href: `#review/${state.batchIds.map(encodeURIComponent).join(",")}/${encodeURIComponent(r.raw.prediction_id)}`,
      "aria-label": `Review ${r.file}`, text: "review" }) : ""))));
  $("#batch-count").textContent = `${rows.length} of ${state.rows.length} shown`;
}

/** Quote a CSV cell; a leading = + - @ is neutralised so spreadsheets do not run it as a formula. */
function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadBatchCsv() {
  const header = ["image", "status", "species", "scientific_name", "individual_id", "is_new_individual", "probability",
    "cetacean_score", "rejection_reason", "prediction_id", "warnings_or_error"];
  const lines = [header.join(",")];
  for (const r of visibleRows()) {
    lines.push([r.file, r.status, r.speciesKey, r.latin, r.individual, r.isNew, r.probability ?? "", r.cetacean ?? "",
      r.raw.rejection_reason || "", r.raw.prediction_id || "", r.note].map(csvCell).join(","));
  }
  saveBlob(new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv;charset=utf-8" }), "batch-results.csv");
}

async function serverExport(format, fallbackName) {
  const status = $("#export-status");
  status.textContent = "Preparing the download…";
  try {
    const { blob, filename } = await api.exportBlob(format);
    saveBlob(blob, filename || fallbackName);
    status.textContent = `Downloaded ${filename || fallbackName}.`;
  } catch (err) {
    status.textContent = err.status === 401 || err.status === 403
      ? `${err.message} (enter the reviewer API key at the top of the page)` : err.message;
  }
}
