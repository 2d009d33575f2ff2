// Review panel: the query photo beside its top-5 candidates; Confirm / New individual / Not a cetacean.
import { api, apiKey } from "./api.js";
import { announce, h, num, pct, replace } from "./dom.js";
import { matchExplainer } from "./matchlines.js";
import { knownSpecies, speciesNames } from "./species.js";

const THUMBS_PER_CANDIDATE = 3;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/; // the service's INDIVIDUAL_ID_PATTERN

function thumb(imageId, alt, url = null, onPick = null) {
  const img = h("img", { class: "thumb", src: api.sameOriginUrl(url) || api.thumbnailUrl(imageId), alt, loading: "lazy", width: 96, height: 96 });
  if (!onPick) return img;
  // a button: clicking a catalog photo (or Enter/Space on it) draws its matched points with the query
  return h("button", { type: "button", class: "thumb-btn", "data-image-id": imageId, title: "Show the matched points with this photo",
    onclick: () => onPick(imageId) }, img);
}

/** Fill a candidate's thumbnail strip with other catalog photos of that individual. */
async function fillThumbs(strip, candidate, onPick) {
  try {
    const ind = await api.getIndividual(candidate.individual_id);
    const others = (ind.images || []).filter((im) => im.image_id && im.image_id !== candidate.reference_image_id);
    for (const im of others.slice(0, THUMBS_PER_CANDIDATE - 1)) {
      strip.append(thumb(im.image_id, `Catalog photo of ${candidate.individual_id}`, im.thumbnail_url, onPick));
    }
  } catch {
    // the reference thumbnail alone is enough to review
  }
}

function candidateCard(candidate, index, name, explainer) {
  const radioId = `cand-${index}`;
  const onPick = explainer ? (imageId) => explainer.show(candidate, imageId) : null;
  const strip = h("div", { class: "thumbs" },
    candidate.reference_image_id ? thumb(candidate.reference_image_id, `Best matching catalog photo of ${candidate.individual_id}`, null, onPick) : null);
  fillThumbs(strip, candidate, onPick);
  const names = speciesNames(candidate.species, candidate);
  return h("li", { class: "candidate" },
    h("input", { type: "radio", name, id: radioId, value: candidate.individual_id, checked: index === 0 }),
    h("label", { for: radioId },
      h("span", { class: "rank", text: `#${index + 1}` }),
      h("code", { class: "cand-id", text: candidate.individual_id }),
      h("span", { class: "cand-species" }, names.common, names.latin ? h("i", { text: ` ${names.latin}` }) : null),
      h("span", { class: "cand-score" }, `score ${num(candidate.score)}`, " · ", `p ${pct(candidate.probability)}`,
        typeof candidate.inliers === "number" ? ` · ${candidate.inliers} matching point${candidate.inliers === 1 ? "" : "s"}` : "")),
    strip);
}

/**
 * Render the review panel for one prediction.
 * @param {HTMLElement} target
 * @param {object} result a `/v1/predict` response
 * @param {string|null} queryUrl object URL of the uploaded photo
 */
export function renderReview(target, result, queryUrl, { rejected = false } = {}) {
  if (!result.prediction_id) {
    replace(target);
    return;
  }
  const candidates = (result.candidates || []).slice(0, 5);
  const groupName = `candidate-${result.prediction_id}`;
  const explainer = candidates.length && !rejected ? matchExplainer(result.prediction_id, queryUrl) : null;
  const chosenCandidate = () => {
    const chosen = target.querySelector(`input[name="${CSS.escape(groupName)}"]:checked`);
    return candidates.find((c) => c.individual_id === chosen?.value) || candidates[0];
  };
  explainer?.bind(chosenCandidate);
  const status = h("p", { class: "review-status", role: "status" });
  const newId = h("input", { id: "new-individual-id", type: "text", maxlength: 128, autocomplete: "off",
    placeholder: "e.g. hw_new_0001", "aria-describedby": "new-id-help" });
  const guess = result.species && result.species !== "unknown" ? result.species : "";
  const newSpecies = h("select", { id: "new-individual-species" },
    h("option", { value: "", text: "Unknown species" }),
    [...new Set([...knownSpecies(), ...(guess ? [guess] : [])])].map((k) =>
      h("option", { value: k, text: speciesNames(k).common, selected: k === guess })));

  const send = async (decision, button) => {
    if (!apiKey.get()) {
      status.textContent = "Enter the reviewer API key at the top of the page first.";
      status.className = "review-status error";
      document.getElementById("api-key").focus();
      return;
    }
    const body = { decision };
    if (decision === "confirm") {
      const chosen = target.querySelector(`input[name="${CSS.escape(groupName)}"]:checked`);
      if (!chosen) {
        status.textContent = "Choose the candidate to confirm.";
        status.className = "review-status error";
        return;
      }
      body.individual_id = chosen.value;
    } else if (decision === "new_individual") {
      const id = newId.value.trim();
      if (id && !ID_PATTERN.test(id)) {
        status.textContent = "An individual id starts with a letter or digit and uses only letters, digits and _ . : -";
        status.className = "review-status error";
        newId.focus();
        return;
      }
      if (id) body.individual_id = id;
      if (newSpecies.value) body.species = newSpecies.value;
    }
    const buttons = [...target.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    status.textContent = "Saving…";
    status.className = "review-status";
    try {
      const answer = await api.review(result.prediction_id, body);
      const enrolled = answer?.individual_id || body.individual_id;
      const msg = decision === "not_cetacean" ? "Recorded: not a cetacean."
        : decision === "confirm" ? `Confirmed as ${enrolled}; the photo was added to the catalog.`
          : `Enrolled as new individual ${enrolled || ""}.`;
      replace(status, msg, " ", enrolled && decision !== "not_cetacean"
        ? h("a", { href: `#catalog/${encodeURIComponent(enrolled)}`, text: "Open in catalog" }) : null);
      status.className = "review-status ok";
      announce(msg);
      button.setAttribute("aria-pressed", "true");
    } catch (err) {
      status.textContent = err.message;
      status.className = "review-status error";
      buttons.forEach((b) => { b.disabled = false; });
    }
  };

  const confirmBtn = h("button", { type: "button", class: "btn primary", disabled: candidates.length === 0,
    onclick: (e) => send("confirm", e.currentTarget) }, "Confirm selected");
  const newBtn = h("button", { type: "button", class: "btn", onclick: (e) => send("new_individual", e.currentTarget) }, "New individual");
  const notBtn = h("button", { type: "button", class: "btn danger", onclick: (e) => send("not_cetacean", e.currentTarget) }, "Not a cetacean");

  replace(target, h("section", { class: "card review", "aria-labelledby": "review-title", "data-testid": "review" },
    h("h3", { id: "review-title", text: rejected ? "Review (override the gate)" : "Review the match" }),
    h("div", { class: "review-grid" },
      h("figure", { class: "query" },
        queryUrl ? h("img", { src: queryUrl, alt: "Query photo" }) : null,
        h("figcaption", { text: "Query photo" })),
      h("fieldset", { class: "candidates" },
        h("legend", { text: candidates.length > 1 ? `Top ${candidates.length} candidates` : candidates.length ? "Top candidate" : "Candidates" }),
        candidates.length
          ? h("ol", { class: "candidate-list", onchange: () => explainer?.refresh(chosenCandidate()) },
            candidates.map((c, i) => candidateCard(c, i, groupName, explainer)))
          : h("p", { class: "muted", text: rejected ? "Rejected photos are not matched against the catalog."
            : "No candidates: the catalog is empty or holds no similar individual." }))),
    explainer ? h("div", { class: "match-explain" }, explainer.toggle, explainer.panel) : null,
    h("div", { class: "review-actions" },
      confirmBtn,
      h("div", { class: "new-id" },
        h("label", { for: "new-individual-id", text: "New individual id" }), newId,
        h("span", { id: "new-id-help", class: "hint", text: "Leave empty to let the service assign one." })),
      h("div", { class: "new-id" }, h("label", { for: "new-individual-species", text: "Species of a new individual" }), newSpecies),
      newBtn, notBtn),
    status));
}
