// Review tab: walk the queue of unreviewed predictions (GET /v1/predictions) with the keyboard.
// Keys: 1-5 choose a candidate, Enter or C confirm it, N new individual, X not a cetacean,
// S or → skip, U undo the last decision (DELETE /v1/predictions/{id}/review).
// The filter form narrows the queue with the API's own filters (review state, species, new
// individual, probability range, batch); the queue then walks what they select, oldest first.
import { api, apiKey } from "./api.js";
import { $, announce, h, pct, replace } from "./dom.js";
import { knownSpecies, speciesNames } from "./species.js";

const PAGE = 20;
const DEFAULT_FILTERS = { review_state: "unreviewed" };
const q = { batches: [], source: 0, cursor: null, buffer: [], current: null, chosen: 0, done: [], skipped: 0,
  reviewed: 0, busy: false, exhausted: false, startAt: null, filters: { ...DEFAULT_FILTERS } };

/**
 * Start a queue: the predictions the filters select (default: all unreviewed), oldest first, or
 * those of the given /v1/predict-batch ids in turn; `startAt` (a prediction id) is shown first when
 * it is in the queue.
 */
export async function startQueue(batchIds = [], startAt = null, filters = null) {
  if (filters) q.filters = { ...filters };
  Object.assign(q, { batches: batchIds.length ? batchIds : [null], source: 0, cursor: null, buffer: [], current: null,
    chosen: 0, skipped: 0, reviewed: 0, exhausted: false, startAt });
  showFilters(batchIds);
  replace($("#queue-scope"), scopeText(batchIds));
  await advance();
}

function scopeText(batchIds) {
  const f = q.filters;
  const state = { unreviewed: "Unreviewed", confirmed: "Confirmed", new_individual: "New-individual",
    not_cetacean: "Not-a-cetacean" }[f.review_state] || "All";
  const parts = [batchIds.length ? `${state} photos of ${batchIds.length === 1 ? "one batch" : `${batchIds.length} batch uploads`}`
    : `${state} photos`];
  if (f.species) parts.push(speciesNames(f.species).common);
  if (f.new_individual === "true") parts.push("suggested as new individuals");
  if (f.new_individual === "false") parts.push("matched to a known individual");
  if (f.min_probability || f.max_probability) parts.push(`confidence ${f.min_probability || 0}–${f.max_probability || 1}`);
  return `${parts.join(", ")}, oldest first`;
}

/** The form shows the filters in force (and the batch ids of a #review/<batches> route). */
function showFilters(batchIds) {
  const form = $("#queue-filters");
  if (!form) return;
  fillSpecies(form.elements.species, q.filters.species);
  for (const name of ["review_state", "species", "new_individual", "min_probability", "max_probability"]) {
    form.elements[name].value = q.filters[name] ?? "";
  }
  form.elements.batch_id.value = batchIds.join(",");
}

function fillSpecies(select, current) {
  const keys = [...new Set([...knownSpecies(), ...(current ? [current] : [])])];
  replace(select, h("option", { value: "", text: "All species" }),
    keys.map((k) => h("option", { value: k, text: speciesNames(k).common })));
  select.value = current || "";
}

function readFilters(form) {
  const v = (name) => form.elements[name].value.trim();
  const filters = { review_state: v("review_state"), species: v("species"), new_individual: v("new_individual"),
    min_probability: v("min_probability"), max_probability: v("max_probability") };
  for (const name of ["min_probability", "max_probability"]) {
    const x = filters[name];
    if (x !== "" && !(Number(x) >= 0 && Number(x) <= 1)) throw new Error(`${name.replace("_", " ")} must be a number from 0 to 1.`);
  }
  if (filters.min_probability && filters.max_probability && Number(filters.min_probability) > Number(filters.max_probability)) {
    throw new Error("The lowest confidence is above the highest.");
  }
  return { filters, batches: v("batch_id").split(",").map((b) => b.trim()).filter(Boolean) };
}

async function fill() {
  while (!q.buffer.length && q.source < q.batches.length) {
    const page = await api.listPredictions({ ...q.filters, sort: "oldest", limit: PAGE,
      batch_id: q.batches[q.source], cursor: q.cursor });
    q.buffer.push(...page.items);
    q.cursor = page.next_cursor;
    if (!q.cursor) { q.source += 1; q.cursor = null; if (!page.items.length) continue; }
    if (!page.items.length) break;
  }
}

async function advance() {
  setStatus("");
  try {
    await fill();
    if (q.startAt) {
      const at = q.buffer.findIndex((p) => p.prediction_id === q.startAt);
      if (at > 0) q.buffer.unshift(...q.buffer.splice(at, 1));
      q.startAt = null;
    }
    q.current = q.buffer.shift() || null;
  } catch (err) {
    q.current = null;
    setStatus(err.message, "error");
  }
  q.chosen = 0;
  render();
}

function setStatus(text, kind = "") {
  const status = $("#queue-status");
  status.textContent = text;
  status.className = `review-status ${kind}`.trim();
}

let photoUrl = null; // the blob: URL of the shown photo, revoked when the next one is shown

/** The prediction's photo, fetched with the key (unreviewed photos are for key holders). */
function queryPhoto(p) {
  const img = h("img", { alt: `Photo ${p.filename}`, "data-keyed": "1" });
  const path = api.sameOriginUrl(p.image_url);
  if (path) {
    api.photoBlob(path).then(({ blob }) => {
      if (photoUrl) URL.revokeObjectURL(photoUrl);
      photoUrl = URL.createObjectURL(blob);
      img.src = photoUrl;
    }).catch(() => { img.alt = `Photo ${p.filename} (not available: enter the API key, or it was not kept)`; });
  }
  return img;
}

function render() {
  const p = q.current;
  replace($("#queue-counts"), `${q.reviewed} reviewed · ${q.skipped} skipped · ${q.buffer.length}${q.source < q.batches.length ? "+" : ""} waiting`);
  $("#queue-undo").disabled = !q.done.length;
  if (!p) {
    replace($("#queue-card"), h("p", { class: "muted", "data-testid": "queue-empty", text: "Nothing left to review here." }));
    return;
  }
  const cands = (p.candidates || []).slice(0, 5);
  replace($("#queue-card"), h("div", { class: "review-grid", "data-testid": "queue-item", dataset: { predictionId: p.prediction_id } },
    h("figure", { class: "query" },
      queryPhoto(p),
      h("figcaption", {}, h("span", { class: "file", text: p.filename }), " · ",
        p.rejected ? "rejected by the gate" : `${speciesNames(p.species || "unknown", p).common}, confidence ${pct(p.probability)}`,
        p.review_state !== "unreviewed" ? h("span", { class: "queue-state", "data-testid": "queue-state",
          text: ` · already ${p.review_state.replace("_", " ")}${p.reviewer_decision?.individual_id ? ` as ${p.reviewer_decision.individual_id}` : ""}${p.reviewed_by ? ` by ${p.reviewed_by}` : ""}` }) : null)),
    h("ol", { class: "candidate-list", "aria-label": "Candidates; press 1 to 5 to choose" },
      cands.length ? cands.map((c, i) => h("li", { class: `candidate${i === q.chosen ? " chosen" : ""}`, "aria-current": i === q.chosen ? "true" : null },
        h("span", { class: "rank", text: `${i + 1}` }),
        h("span", {}, h("code", { class: "cand-id", text: c.individual_id }), " ",
          h("span", { class: "cand-score", text: `${speciesNames(c.species, c).common} · p ${pct(c.probability)}` })),
        c.reference_image_id ? h("img", { class: "thumb", src: api.thumbnailUrl(c.reference_image_id), alt: `Catalog photo of ${c.individual_id}`, width: 96, height: 96 }) : null))
        : h("li", { class: "muted", text: "No candidates: N makes it a new individual." }))));
}

async function decide(decision) {
  const p = q.current;
  if (!p || q.busy) return;
  if (!apiKey.get()) { setStatus("Enter the reviewer API key at the top of the page first.", "error"); return; }
  const body = { decision };
  if (decision === "confirm") {
    const c = (p.candidates || [])[q.chosen];
    if (!c) { setStatus("No candidate to confirm: press N for a new individual.", "error"); return; }
    body.individual_id = c.individual_id;
  }
  q.busy = true;
  try {
    const answer = await reviewFollowingCuration(p, body);
    q.done.push(p);
    q.reviewed += 1;
    const moved = body.individual_id && answer.individual_id !== body.individual_id ? ` (${body.individual_id} was merged or renamed into it)` : "";
    const msg = decision === "not_cetacean" ? `${p.filename}: not a cetacean.` : `${p.filename}: ${answer.individual_id}${moved}.`;
    await advance();
    setStatus(`Saved — ${msg}`, "ok");
    announce(msg);
  } catch (err) {
    if (err.status === 409) { await advance(); setStatus(`Skipped: ${err.message}`, "error"); } // decided elsewhere
    else setStatus(err.message, "error");
  } finally {
    q.busy = false;
  }
}

/**
 * Confirm as the chosen candidate; when curation retired that id after the page loaded it (a merge
 * or rename elsewhere: 404), confirm as the individual it lives on as (GET /v1/individuals/{id}/curation).
 */
async function reviewFollowingCuration(p, body) {
  try {
    return await api.review(p.prediction_id, body);
  } catch (err) {
    if (err.status !== 404 || body.decision !== "confirm" || !body.individual_id) throw err;
    const history = await api.curationHistory(body.individual_id).catch(() => null);
    if (!history?.current_id || history.current_id === body.individual_id) throw err;
    return api.review(p.prediction_id, { ...body, individual_id: history.current_id });
  }
}

async function undoLast() {
  const last = q.done[q.done.length - 1];
  if (!last || q.busy) return;
  q.busy = true;
  try {
    await api.undoReview(last.prediction_id);
    q.done.pop();
    q.reviewed -= 1;
    if (q.current) q.buffer.unshift(q.current);
    q.current = last;
    q.chosen = 0;
    render();
    setStatus(`Undone: ${last.filename} is unreviewed again.`, "ok");
    announce(`Undone: ${last.filename}`);
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    q.busy = false;
  }
}

function skip() {
  if (!q.current || q.busy) return;
  q.skipped += 1;
  advance();
}

const KEYS = { Enter: () => decide("confirm"), c: () => decide("confirm"), n: () => decide("new_individual"),
  x: () => decide("not_cetacean"), s: skip, ArrowRight: skip, u: undoLast };

export function initQueue() {
  const panel = $("#panel-review");
  panel.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest("button") && (event.key === "Enter" || event.key === " ")) return; // the button's own action
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (/^[1-5]$/.test(key)) {
      if (q.current && Number(key) <= (q.current.candidates || []).length) { q.chosen = Number(key) - 1; render(); }
      event.preventDefault();
      return;
    }
    if (KEYS[key]) { event.preventDefault(); KEYS[key](); }
  });
  $("#queue-confirm").addEventListener("click", () => decide("confirm"));
  $("#queue-new").addEventListener("click", () => decide("new_individual"));
  $("#queue-not").addEventListener("click", () => decide("not_cetacean"));
  $("#queue-skip").addEventListener("click", skip);
  $("#queue-undo").addEventListener("click", undoLast);
  const form = $("#queue-filters");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let chosen;
    try {
      chosen = readFilters(form);
    } catch (err) {
      setStatus(err.message, "error");
      return;
    }
    startQueue(chosen.batches, null, chosen.filters);
  });
  $("#queue-filters-reset").addEventListener("click", () => startQueue([], null, { ...DEFAULT_FILTERS }));
}
