// Catalog tab: individuals with thumbnails, search by id or species, a page per individual.
import { api } from "./api.js";
import { $, announce, h, replace } from "./dom.js";
import { candidateSection } from "./candidates.js";
import { curationSection, retiredNotice } from "./curation.js";
import { historySection } from "./history.js";
import { knownSpecies, speciesNames, speciesText } from "./species.js";

const PAGE = 24;
const FETCH_LIMIT = 500; // the service's largest page
const SEARCH_MAX = 20_000; // a text search filters up to this many individuals in the page
const state = { offset: 0, total: 0, q: "", species: "", seq: 0 };

export function initCatalog() {
  $("#catalog-search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = $("#catalog-q").value.trim();
    state.species = $("#catalog-species").value;
    state.offset = 0;
    loadList();
  });
  $("#catalog-species").addEventListener("change", () => $("#catalog-search").requestSubmit());
  $("#catalog-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadList(); });
  $("#catalog-next").addEventListener("click", () => { state.offset += PAGE; loadList(); });
}

export function fillSpeciesSelect(extra = []) {
  const select = $("#catalog-species");
  const current = select.value;
  const keys = [...new Set([...knownSpecies(), ...extra])];
  replace(select, h("option", { value: "", text: "All species" }),
    keys.map((k) => h("option", { value: k, text: speciesNames(k).common })));
  select.value = current;
}

function matches(item, q) {
  const needle = q.toLowerCase();
  const { common, latin } = speciesNames(item.species, item);
  return [item.individual_id, item.species, common, latin].some((v) => String(v || "").toLowerCase().includes(needle));
}

function thumbnailOf(item) {
  const own = api.sameOriginUrl(item.thumbnail_url);
  if (own) return own;
  const id = item.image_id || item.thumbnail_image_id || (item.image_ids || [])[0] || (item.images || [])[0]?.image_id;
  return id ? api.thumbnailUrl(id) : null;
}

function card(item) {
  const src = thumbnailOf(item);
  const href = `#catalog/${encodeURIComponent(item.individual_id)}`;
  const n = item.n_images ?? (item.image_ids || item.images || []).length;
  return h("li", { class: "card individual" },
    h("a", { href, class: "individual-link", "aria-label": `Individual ${item.individual_id}, ${speciesNames(item.species, item).common}` },
      src ? h("img", { src, alt: "", loading: "lazy", width: 240, height: 160 })
        : h("div", { class: "no-thumb", "aria-hidden": "true", text: "no photo" }),
      h("code", { class: "individual-id", text: item.individual_id }),
      h("span", { class: "species", text: speciesNames(item.species, item).common }),
      h("span", { class: "meta", text: `${n} photo${n === 1 ? "" : "s"}${item.last_seen ? ` · last seen ${fmtDate(item.last_seen)}` : ""}` })));
}

export async function loadList() {
  const grid = $("#catalog-grid");
  const seq = ++state.seq; // a slower, older answer must not overwrite a newer one
  grid.setAttribute("aria-busy", "true");
  try {
    let items, total;
    if (state.q) {
      const all = [];
      for (let offset = 0; offset < SEARCH_MAX; offset += FETCH_LIMIT) {
        const body = await api.listIndividuals({ species: state.species, limit: FETCH_LIMIT, offset });
        all.push(...(body.items || []));
        if (!body.items?.length || offset + FETCH_LIMIT >= (body.total ?? 0)) break;
      }
      const found = all.filter((it) => matches(it, state.q));
      total = found.length;
      items = found.slice(state.offset, state.offset + PAGE);
    } else {
      const body = await api.listIndividuals({ species: state.species, limit: PAGE, offset: state.offset });
      items = body.items || [];
      total = body.total ?? items.length;
    }
    if (seq !== state.seq) return;
    state.total = total;
    replace(grid, items.length ? items.map(card) : h("li", { class: "empty muted",
      text: state.q || state.species ? "No individual matches this search." : "The catalog is empty. Import a ZIP of photos with a CSV above, or enrol photos from the Identify tab." }));
    $("#catalog-count").textContent = `${total} individual${total === 1 ? "" : "s"}`;
    const page = Math.floor(state.offset / PAGE) + 1, pages = Math.max(1, Math.ceil(total / PAGE));
    $("#catalog-page").textContent = `Page ${page} of ${pages}`;
    $("#catalog-prev").disabled = state.offset === 0;
    $("#catalog-next").disabled = state.offset + PAGE >= total;
    fillSpeciesSelect(items.map((it) => it.species).filter(Boolean));
  } catch (err) {
    if (seq === state.seq) replace(grid, h("li", { class: "empty error", role: "alert", text: err.message }));
  } finally {
    if (seq === state.seq) grid.removeAttribute("aria-busy");
  }
}

function fmtDate(value) {
  if (!value) return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** Show an individual's page (after a curation change: where the photos are now), or the list. */
function go(id) {
  const hash = id ? `#catalog/${encodeURIComponent(id)}` : "#catalog";
  if (location.hash !== hash) history.pushState(null, "", hash);
  if (id) showIndividual(id);
  else showList();
}

/** The page of one individual: every photo and every sighting. */
export async function showIndividual(id) {
  const view = $("#catalog-detail-view");
  $("#catalog-list-view").hidden = true;
  view.hidden = false;
  replace(view, h("p", { class: "muted", text: "Loading…" }));
  const back = h("a", { href: "#catalog", class: "back" }, "← All individuals");
  let ind;
  try {
    ind = await api.getIndividual(id);
  } catch (err) {
    const card = h("div", { class: "card error-card", role: "alert" }, h("h2", { text: `Individual ${id}` }), h("p", { text: err.message }));
    replace(view, back, card);
    if (err.status === 404) retiredNotice(id, go).then((notice) => notice && card.append(notice));
    return;
  }
  const images = ind.images || (ind.image_ids || []).map((image_id) => ({ image_id }));
  const { latin } = speciesNames(ind.species, ind);
  replace(view, back,
    h("article", { class: "card individual-page", "aria-labelledby": "ind-title", "data-testid": "individual-page" },
      h("h2", { id: "ind-title" }, "Individual ", h("code", { text: ind.individual_id })),
      h("p", { class: "species-line" }, speciesNames(ind.species, ind).common, latin ? h("i", { text: ` ${latin}` }) : null),
      h("p", { class: "muted", text: `${images.length} photo${images.length === 1 ? "" : "s"}${ind.last_seen ? ` · last seen ${fmtDate(ind.last_seen)}` : ""}` }),
      h("h3", { text: "Photos" }),
      h("ul", { class: "photo-grid", "aria-label": "Photos" }, images.map((im) => h("li", {},
        h("figure", {},
          h("img", { src: thumbnailOf(im), alt: `Photo ${im.filename || im.image_id} of ${ind.individual_id}`, loading: "lazy" }),
          h("figcaption", { text: im.filename || im.image_id }))))),
      historySection(ind.individual_id),
      candidateSection(ind.individual_id, () => showIndividual(ind.individual_id)),
      curationSection(ind, images, go)));
  announce(`Individual ${ind.individual_id}, ${speciesText(ind.species, ind)}, ${images.length} photos`);
  view.querySelector("h2").setAttribute("tabindex", "-1");
  view.querySelector("h2").focus();
}

export function showList() {
  $("#catalog-detail-view").hidden = true;
  $("#catalog-list-view").hidden = false;
  loadList();
}
