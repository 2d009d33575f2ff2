// Entry point: tabs with hash routes (#identify, #batch, #catalog, #catalog/<id>) and the API key.
import { apiKey, retryImageWithKey } from "./api.js";
import { initBatch } from "./batch.js";
import { fillSpeciesSelect, initCatalog, showIndividual, showList } from "./catalog.js";
import { initImport, refreshEmptyNotice } from "./catalog_import.js";
import { $, $$ } from "./dom.js";
import { initIdentify } from "./identify.js";
import { initQueue, startQueue } from "./queue.js";
import { loadSpecies } from "./species.js";

const TABS = ["identify", "batch", "catalog", "review"];
let queueRoute = null; // the #review/... route the queue was last started for

function selectTab(name, { focus = false } = {}) {
  for (const tab of $$('[role="tab"]')) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
  }
}

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [name, ...rest] = hash.split("/");
  const tab = TABS.includes(name) ? name : "identify";
  selectTab(tab);
  refreshEmptyNotice(); // a review may have filled the catalog meanwhile
  if (tab === "catalog") {
    const id = rest.join("/");
    if (id) showIndividual(id);
    else showList();
  }
  if (tab === "review" && hash !== queueRoute) {
    queueRoute = hash; // #review, or #review/<batch ids, comma-separated>[/<prediction id to show first>]
    startQueue((rest[0] || "").split(",").filter(Boolean), rest[1] || null);
    document.getElementById("queue-root").focus();
  }
}

/** Navigate to a hash route now (pushState fires no hashchange, so route() runs synchronously). */
function go(hash) {
  if (location.hash !== hash) history.pushState(null, "", hash);
  route();
}

function initTabs() {
  const tabs = $$('[role="tab"]');
  for (const tab of tabs) {
    tab.addEventListener("click", () => go(`#${tab.dataset.tab}`));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      const t = tabs[(next + tabs.length) % tabs.length];
      go(`#${t.dataset.tab}`);
      t.focus();
    });
  }
  window.addEventListener("hashchange", route);
  window.addEventListener("popstate", route);
}

function initKey() {
  const input = $("#api-key");
  const status = $("#key-status");
  const show = () => { status.textContent = apiKey.get() ? "Key saved for this browser tab." : "Kept for this browser tab only."; };
  input.value = apiKey.get();
  show();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey.set(input.value.trim());
    show();
  });
  $("#key-clear").addEventListener("click", () => {
    apiKey.set("");
    input.value = "";
    show();
  });
}

initKey();
// photos behind a key: a failed <img> load is retried with X-API-Key (error events do not bubble)
document.addEventListener("error", (event) => {
  if (event.target instanceof HTMLImageElement) retryImageWithKey(event.target);
}, true);
initTabs();
initIdentify();
initBatch();
initCatalog();
initQueue();
initImport(() => { if (!$("#panel-catalog").hidden) showList(); });
route();
loadSpecies().then(() => fillSpeciesSelect());
