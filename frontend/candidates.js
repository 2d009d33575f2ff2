// An individual's unreviewed candidate sightings, beside its confirmed ones: photos the model matched
// to this individual (its top-1 answer) that no reviewer has decided yet
// (GET /v1/individuals/{id}/sightings?include=candidates). Each can be confirmed as this individual
// here (POST /v1/predictions/{id}/review) or opened in the Review tab. Their photos need the key.
import { api, apiKey } from "./api.js";
import { announce, h, pct, replace } from "./dom.js";

function when(value) {
  if (!value) return "date unknown";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function photo(c) {
  const img = h("img", { class: "thumb", alt: `Candidate photo ${c.filename}`, width: 96, height: 96, "data-keyed": "1" });
  const path = api.sameOriginUrl(c.image_url);
  if (path && apiKey.get()) {
    api.photoBlob(path).then(({ blob }) => { img.src = URL.createObjectURL(blob); })
      .catch(() => { img.alt = `Candidate photo ${c.filename} (not available)`; });
  } else {
    img.alt = `Candidate photo ${c.filename} (enter the reviewer key to see it)`;
  }
  return img;
}

function entry(c, individualId, onDecided) {
  const status = h("span", { class: "hint", role: "status" });
  const confirm = h("button", { type: "button", class: "btn", "data-testid": "candidate-confirm" }, `Confirm as ${individualId}`);
  confirm.addEventListener("click", async () => {
    if (!apiKey.get()) { status.textContent = "Enter the reviewer API key at the top of the page first."; return; }
    confirm.disabled = true;
    status.textContent = "Saving…";
    try {
      await api.review(c.prediction_id, { decision: "confirm", individual_id: individualId });
      announce(`${c.filename} confirmed as ${individualId}`);
      onDecided();
    } catch (err) {
      confirm.disabled = false;
      status.textContent = err.message;
    }
  });
  const route = `#review/${encodeURIComponent(c.batch_id || "")}/${encodeURIComponent(c.prediction_id)}`;
  const s = c.sighting || {};
  return h("li", { class: "timeline-entry candidate-sighting", "data-testid": "candidate-sighting", dataset: { predictionId: c.prediction_id } },
    h("span", { class: "timeline-dot pending", "aria-hidden": "true", text: "?" }),
    photo(c),
    h("div", { class: "timeline-text" },
      h("time", { datetime: c.observed_at || c.created_at || "", text: when(c.observed_at || c.created_at) }),
      h("span", { text: `${c.filename} · confidence ${pct(c.probability)}` }),
      h("span", { class: "muted", text: s.location || "" }),
      h("span", {}, confirm, " ", h("a", { href: route, text: "Open in the Review tab" }), " ", status)));
}

/** The candidates section of an individual's page; `onDecided` reloads the page after a confirm. */
export function candidateSection(individualId, onDecided) {
  const title = () => h("h3", { id: "candidates-title", text: "Unreviewed candidate sightings" });
  const section = h("section", { class: "history candidates", "aria-labelledby": "candidates-title", "data-testid": "candidates" },
    title(), h("p", { class: "muted", text: "Loading candidates…" }));
  api.sightings(individualId, { limit: 1, include: "candidates" }).then((page) => {
    const items = page.candidates || [];
    replace(section, title(),
      h("p", { class: "hint", "data-testid": "candidate-count", text: items.length
        ? `${items.length} photo${items.length === 1 ? "" : "s"} the model matched to ${individualId}, not reviewed yet${page.candidates_truncated ? " (the oldest shown)" : ""}.`
        : `No unreviewed photo is matched to ${individualId}.` }),
      items.length ? h("ol", { class: "timeline", "aria-label": `Unreviewed candidates for ${individualId}, oldest first` },
        items.map((c) => entry(c, individualId, onDecided))) : null);
  }).catch((err) => {
    replace(section, title(), h("p", { class: "review-status error", role: "alert", text: err.message }));
  });
  return section;
}
