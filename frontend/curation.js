// Catalog curation on an individual's page, for key holders: rename it, merge it (a duplicate) into
// the individual that stays, move one photo to another individual or remove it, and the curation
// history (GET /v1/individuals/{id}/curation). Each change is one transaction on the service that
// matching sees at once; the page then shows the individual the photos are on.
import { api, apiKey } from "./api.js";
import { announce, h, replace } from "./dom.js";

const ID_PATTERN = "[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,127}";
const ACTIONS = {
  rename: (d) => `renamed to ${d.new_id}`, rename_in: (d) => `renamed from ${d.previous_id}`,
  merge: (d) => `merged into ${d.into}`, merge_in: (d) => `${d.from} merged into it`,
  move_image_out: (d) => `photo ${d.filename || d.image_id} moved to ${d.to}`,
  move_image_in: (d) => `photo ${d.filename || d.image_id} moved here from ${d.from}`,
  remove_image: (d) => `photo ${d.filename || d.image_id} removed`,
};

function when(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function setStatus(el, text, kind = "") {
  el.textContent = text;
  el.className = `review-status ${kind}`.trim();
}

function idInput(name, label, placeholder) {
  return h("label", {}, label, h("input", { name, type: "text", required: true, pattern: ID_PATTERN, placeholder,
    autocomplete: "off", spellcheck: "false" }));
}

/** The list of what curation did to this id (and the ids merged or renamed into it). */
function historyList(individualId) {
  const list = h("ol", { class: "curation-history", "data-testid": "curation-history", "aria-label": `Curation history of ${individualId}` });
  api.curationHistory(individualId).then((history) => {
    replace(list, history.events.length ? history.events.map((e) => h("li", {},
      h("time", { datetime: e.at, text: when(e.at) }), " ",
      (ACTIONS[e.action] || (() => e.action))(e.detail || {}),
      e.actor ? h("span", { class: "muted", text: ` · by ${e.actor}` }) : null))
      : h("li", { class: "muted", text: "No curation yet." }));
  }).catch(() => replace(list, h("li", { class: "muted", text: "No curation yet." })));
  return list;
}

/**
 * The curation section of an individual's page. `show(id)` shows an individual's page (after a
 * change: the one the photos are on now).
 */
export function curationSection(ind, images, show) {
  const id = ind.individual_id;
  const status = h("p", { class: "review-status", role: "status", "data-testid": "curation-status" });
  async function run(what, action, next) {
    if (!apiKey.get()) { setStatus(status, "Enter the reviewer API key at the top of the page first.", "error"); return; }
    setStatus(status, `${what}…`);
    try {
      const answer = await action();
      announce(`${what}: done.`);
      show(next(answer));
    } catch (err) {
      setStatus(status, err.message, "error");
    }
  }

  const rename = h("form", { class: "filters", "data-testid": "curate-rename", "aria-label": "Rename this individual" },
    idInput("new_id", "New id", "e.g. hw_0042"), h("button", { type: "submit", class: "btn" }, "Rename"));
  rename.addEventListener("submit", (event) => {
    event.preventDefault();
    const newId = rename.elements.new_id.value.trim();
    run(`Renaming ${id} to ${newId}`, () => api.rename(id, newId), (a) => a.individual_id);
  });

  // a merge is not undone by a click: the first press arms it and says what will happen
  const mergeButton = h("button", { type: "submit", class: "btn danger" }, "Merge");
  const merge = h("form", { class: "filters", "data-testid": "curate-merge", "aria-label": "Merge this individual into another" },
    idInput("into", "Merge into (the individual that stays)", "e.g. hw_0042"), mergeButton);
  merge.elements.into.addEventListener("input", () => { delete merge.dataset.armed; mergeButton.textContent = "Merge"; });
  merge.addEventListener("submit", (event) => {
    event.preventDefault();
    const into = merge.elements.into.value.trim();
    if (merge.dataset.armed !== into) {
      merge.dataset.armed = into;
      mergeButton.textContent = `Press again: merge ${id} into ${into}`;
      setStatus(status, `All ${images.length} photo(s) of ${id} will join ${into}; ${id} will be retired and point to ${into}.`);
      return;
    }
    run(`Merging ${id} into ${into}`, () => api.merge(id, into), (a) => a.individual_id);
  });

  const photo = h("form", { class: "filters", "data-testid": "curate-photo", "aria-label": "Move or remove one photo" },
    h("label", {}, "Photo", h("select", { name: "image_id" }, images.map((im) => h("option", { value: im.image_id, text: im.filename || im.image_id })))),
    idInput("target", "Move to individual", "e.g. hw_0042"),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "create" }), " as a new individual"),
    h("button", { type: "submit", class: "btn" }, "Move"),
    h("button", { type: "button", class: "btn danger", "data-testid": "curate-remove" }, "Remove photo"));
  photo.addEventListener("submit", (event) => {
    event.preventDefault();
    const target = photo.elements.target.value.trim();
    run(`Moving the photo to ${target}`, () => api.moveImage(photo.elements.image_id.value, target, photo.elements.create.checked),
      (a) => (a.remaining_images ? id : a.individual_id));
  });
  photo.querySelector("[data-testid=curate-remove]").addEventListener("click", () => {
    const imageId = photo.elements.image_id.value;
    run("Removing the photo", () => api.removeImage(imageId), (a) => (a.remaining_images ? id : null));
  });

  return h("section", { class: "history curation", "aria-labelledby": "curation-title", "data-testid": "curation" },
    h("h3", { id: "curation-title", text: "Curate" }),
    h("p", { class: "hint", text: "Needs the reviewer API key. Each change is recorded with your name (or key) and seen by matching at once; stored predictions and reviews follow a rename or merge." }),
    rename, merge, photo, status,
    h("h4", { text: "History" }), historyList(id));
}

/** For an id that is not in the catalog: where it went, when curation retired it (or null). */
export async function retiredNotice(id, show) {
  try {
    const history = await api.curationHistory(id);
    if (!history.current_id || history.current_id === id) return null;
    return h("p", { "data-testid": "retired-notice" }, `${id} was merged or renamed; its photos are now on `,
      h("a", { href: `#catalog/${encodeURIComponent(history.current_id)}`, onclick: (e) => { e.preventDefault(); show(history.current_id); } },
        history.current_id), ".");
  } catch {
    return null;
  }
}
