// Identify tab: one photo -> result card or rejection card, then the review panel.
import { api } from "./api.js";
import { $, announce, dropZone, h, pct, progressRow, replace } from "./dom.js";
import { renderReview } from "./review.js";
import { learnSpecies, speciesNames } from "./species.js";

const REJECTION_TEXT = {
  not_a_marine_mammal: "The photo was not recognised as a whale or dolphin.",
};

const ADVICE = [
  "Crop tighter around the animal so it fills most of the frame.",
  "Use a photo in better light: no strong glare, backlight or heavy haze.",
  "Prefer a dorsal fin, fluke (tail) or head view: these carry the marks that identify individuals.",
  "Avoid photos where the animal is far away, blurred, or mostly under water.",
];

let previewUrl = null;

export function initIdentify() {
  dropZone($("#identify-drop"), $("#identify-file"), (files) => identify(files[0]));
}

function sightingFields() {
  const fields = {};
  for (const name of ["latitude", "longitude", "observed_at", "location", "observer"]) {
    const value = $(`#f-${name}`).value.trim();
    if (value) fields[name] = name === "observed_at" && value.length === 16 ? `${value}:00` : value;
  }
  return fields;
}

const setProgress = progressRow("identify");

async function identify(file) {
  if (!file.type.startsWith("image/") && !/\.(jpe?g|png|webp|tiff?|bmp|heic)$/i.test(file.name)) {
    showError(`“${file.name}” is not an image. Choose a JPEG or PNG photo.`);
    return;
  }
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  $("#identify-preview-img").src = previewUrl;
  $("#identify-preview-name").textContent = file.name;
  $("#identify-preview").hidden = false;
  replace($("#identify-result"));
  replace($("#review"));
  $("#identify-drop").setAttribute("aria-busy", "true");
  setProgress(0, "Uploading…");
  try {
    const result = await api.predict(file, sightingFields(), (fraction) =>
      fraction === null ? setProgress(null, "Analysing the photo…") : setProgress(fraction, `Uploading… ${Math.round(fraction * 100)} %`));
    setProgress(false);
    showResult(result, file);
  } catch (err) {
    setProgress(false);
    showError(err.message);
  } finally {
    $("#identify-drop").removeAttribute("aria-busy");
  }
}

function showError(message) {
  replace($("#identify-result"), h("div", { class: "card result error-card", role: "alert" },
    h("h3", { text: "The photo could not be processed" }), h("p", { text: message })));
  announce(message);
}

function meter(label, value, cls = "") {
  const v = typeof value === "number" ? Math.max(0, Math.min(1, value)) : 0;
  const bar = h("span", { class: "meter-fill" });
  bar.style.width = `${(v * 100).toFixed(1)}%`;
  return h("div", { class: `meter ${cls}` },
    h("span", { class: "meter-label", text: label }),
    h("span", { class: "meter-track", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": Math.round(v * 100) }, bar),
    h("span", { class: "meter-value", text: pct(value) }));
}

function sightingText(s) {
  if (!s) return "";
  const parts = [];
  if (s.observed_at) parts.push(String(s.observed_at).replace("T", " ").slice(0, 16));
  if (s.location) parts.push(s.location);
  if (typeof s.latitude === "number" && typeof s.longitude === "number") parts.push(`${s.latitude.toFixed(4)}, ${s.longitude.toFixed(4)}`);
  if (s.observer) parts.push(`by ${s.observer}`);
  return parts.join(" · ");
}

function band(result) {
  const b = result.gate_band || (result.rejected ? "reject" : null);
  return b ? h("span", { class: `badge band-${b}`, text: `gate: ${b}` }) : null;
}

function warningsList(result) {
  const items = (result.warnings || []).map((w) => h("li", { text: w }));
  return items.length ? h("ul", { class: "warnings", "aria-label": "Warnings" }, items) : null;
}

/** The result card (accepted photo) or the rejection card (the gate said no). */
export function showResult(result, file) {
  const target = $("#identify-result");
  learnSpecies(result);
  if (result.rejected) {
    const reason = REJECTION_TEXT[result.rejection_reason] || `Rejected: ${result.rejection_reason || "unknown reason"}.`;
    replace(target, h("article", { class: "card result rejection-card", "aria-labelledby": "rej-title", "data-testid": "rejection-card" },
      h("h3", { id: "rej-title" }, h("span", { class: "icon", "aria-hidden": "true", text: "⚠" }), " Not identified"),
      h("p", { class: "lead", text: reason }),
      meter("Cetacean score", result.cetacean_score, "low"),
      h("p", { class: "muted" }, "Reason code: ", h("code", { text: result.rejection_reason || "—" }), " ", band(result)),
      h("h4", { text: "How to get an answer" }),
      h("ul", { class: "advice" }, ADVICE.map((a) => h("li", { text: a }))),
      warningsList(result),
      h("p", { class: "hint", text: "If this really is a whale or dolphin, a reviewer can still enrol it below." })));
    announce(`Rejected: ${reason}`);
    renderReview($("#review"), result, previewUrl, { rejected: true });
    return;
  }
  const { common, latin } = speciesNames(result.species, result);
  const isNew = result.is_new_individual === true;
  const idText = result.individual_id || (isNew ? "not in the catalog" : "—");
  replace(target, h("article", { class: "card result result-card", "aria-labelledby": "res-title", "data-testid": "result-card" },
    h("div", { class: "result-head" },
      h("div", {},
        h("h3", { id: "res-title", class: "species-common", text: common }),
        latin ? h("p", { class: "species-latin" }, h("i", { text: latin })) : null),
      isNew ? h("span", { class: "badge new", text: "New individual" }) : h("span", { class: "badge known", text: "Known individual" })),
    h("dl", { class: "facts" },
      h("dt", { text: "Individual" }), h("dd", {}, h("code", { class: "individual-id", text: idText })),
      h("dt", { text: "Confidence (calibrated)" }),
      h("dd", { text: (result.candidates || []).length ? pct(result.probability) : "— (no catalog match)" }),
      h("dt", { text: "Species score" }), h("dd", { text: pct(result.species_score) }),
      h("dt", { text: "New individual" }), h("dd", { text: result.is_new_individual == null ? "—" : isNew ? "yes" : "no" }),
      h("dt", { text: "Model" }), h("dd", {}, h("code", { text: result.model_version || "—" })),
      sightingText(result.sighting) ? [h("dt", { text: "Sighting" }), h("dd", { text: sightingText(result.sighting) })] : null),
    meter("Cetacean score", result.cetacean_score),
    h("p", { class: "muted" }, band(result), " ", result.gate_backend ? `gate backend: ${result.gate_backend}` : ""),
    warningsList(result)));
  announce(`${common}: ${isNew ? "new individual" : `individual ${idText}`}, confidence ${pct(result.probability)}`);
  renderReview($("#review"), result, previewUrl, { rejected: false, filename: file?.name });
}
