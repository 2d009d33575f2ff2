// An individual's sighting history: first/last seen, an offline map and a timeline, with CSV and
// Darwin Core downloads (GET /v1/individuals/{id}/sightings[/export]). Positions are what the service
// lets this caller see (generalised or withheld without a key).
import { api } from "./api.js";
import { h, replace, saveBlob } from "./dom.js";
import { sightingMap } from "./worldmap.js";

const PAGE = 500; // the service's largest page

function when(value) {
  if (!value) return "date unknown";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function position(s, precision) {
  if (typeof s.latitude !== "number" || typeof s.longitude !== "number") {
    return precision === "withheld" ? "position withheld" : "no position";
  }
  const digits = precision === "exact" ? 4 : 2;
  const text = `${Math.abs(s.latitude).toFixed(digits)}°${s.latitude < 0 ? "S" : "N"}, ${Math.abs(s.longitude).toFixed(digits)}°${s.longitude < 0 ? "W" : "E"}`;
  return precision === "exact" ? text : `${text} (±${precision}° cell)`;
}

async function loadAll(id) {
  const first = await api.sightings(id, { limit: PAGE, offset: 0 });
  const items = [...first.items];
  while (items.length < first.total) {
    const next = await api.sightings(id, { limit: PAGE, offset: items.length });
    if (!next.items.length) break;
    items.push(...next.items);
  }
  return { ...first, items };
}

function timelineEntry(item, index, individualId) {
  const s = item.sighting || {};
  return h("li", { class: "timeline-entry", "data-testid": "timeline-entry" },
    h("span", { class: "timeline-dot", "aria-hidden": "true", text: String(index + 1) }),
    h("img", { class: "thumb", src: api.sameOriginUrl(item.thumbnail_url) || api.thumbnailUrl(item.image_id),
      alt: `Photo ${item.filename || item.image_id} of ${individualId}`, loading: "lazy", width: 96, height: 96 }),
    h("div", { class: "timeline-text" },
      h("time", { datetime: item.observed_at || "", text: when(item.observed_at) }),
      h("span", { text: s.location || (s.precision === "exact" ? "place not recorded" : "place withheld") }),
      h("span", { class: "muted", text: position(s, s.precision) }),
      h("span", { class: "muted", text: s.observer ? `observed by ${s.observer}` : "" })));
}

async function download(id, format, status) {
  status.textContent = "Preparing…";
  try {
    const { blob, filename } = await api.sightingsExport(id, format);
    saveBlob(blob, filename || `${id}-sightings.${format === "dwca" ? "zip" : "csv"}`);
    status.textContent = "Downloaded.";
  } catch (err) {
    status.textContent = err.message;
  }
}

/** The history section of an individual's page (filled when the sightings arrive). */
export function historySection(individualId) {
  const section = h("section", { class: "history", "aria-labelledby": "history-title", "data-testid": "history" },
    h("h3", { id: "history-title", text: "Sighting history" }), h("p", { class: "muted", text: "Loading sightings…" }));
  loadAll(individualId).then((page) => {
    const items = page.items;
    const located = items.map((it, i) => ({ it, i }))
      .filter(({ it }) => typeof it.sighting?.latitude === "number" && typeof it.sighting?.longitude === "number");
    const points = located.map(({ it, i }) => ({
      lat: it.sighting.latitude, lon: it.sighting.longitude,
      cell: Number.parseFloat(it.sighting.precision) || null,
      label: `Sighting ${i + 1}: ${when(it.observed_at)}, ${position(it.sighting, it.sighting.precision)}`,
    }));
    const generalised = items.some((it) => it.sighting?.precision !== "exact");
    const status = h("span", { class: "hint", role: "status" });
    replace(section,
      h("h3", { id: "history-title", text: "Sighting history" }),
      h("dl", { class: "stats history-stats" },
        h("div", {}, h("dt", { text: "Sightings" }), h("dd", { "data-testid": "sighting-count", text: String(page.total) })),
        h("div", {}, h("dt", { text: "First seen" }), h("dd", { text: when(page.first_seen) })),
        h("div", {}, h("dt", { text: "Last seen" }), h("dd", { text: when(page.last_seen) }))),
      points.length ? sightingMap(points, `Map of ${points.length} sighting position${points.length === 1 ? "" : "s"} of ${individualId}`)
        : h("p", { class: "muted", text: "No sighting has a position this page may show." }),
      h("p", { class: "hint map-note" },
        "Land: Natural Earth 1:110m (public domain). ",
        generalised ? "Positions are generalised or withheld for callers without a reviewer key (sensitive species)." : "",
        located.length < items.length ? ` ${items.length - located.length} sighting(s) without a position.` : ""),
      h("ol", { class: "timeline", "aria-label": `Sightings of ${individualId}, oldest first` },
        items.map((it, i) => timelineEntry(it, i, individualId))),
      h("div", { class: "downloads", role: "group", "aria-label": "Download this history" },
        h("button", { type: "button", class: "btn ghost", onclick: () => download(individualId, "csv", status) }, "History (CSV)"),
        h("button", { type: "button", class: "btn ghost", onclick: () => download(individualId, "dwca", status) }, "Darwin Core archive"),
        status));
  }).catch((err) => {
    replace(section, h("h3", { id: "history-title", text: "Sighting history" }),
      h("p", { class: "review-status error", role: "alert", text: err.message }));
  });
  return section;
}
