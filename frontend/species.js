// Species keys -> common and Latin names. The service's `GET /v1/species` is preferred when it
// exists; this table is the offline fallback (mirrors whales_identify.species for known keys).
import { api } from "./api.js";

const FALLBACK = {
  north_atlantic_right_whale: ["North Atlantic right whale", "Eubalaena glacialis"],
  southern_right_whale: ["Southern right whale", "Eubalaena australis"],
  blue_whale: ["Blue whale", "Balaenoptera musculus"],
  fin_whale: ["Fin whale", "Balaenoptera physalus"],
  sei_whale: ["Sei whale", "Balaenoptera borealis"],
  minke_whale: ["Common minke whale", "Balaenoptera acutorostrata"],
  brydes_whale: ["Bryde's whale", "Balaenoptera edeni"],
  humpback_whale: ["Humpback whale", "Megaptera novaeangliae"],
  gray_whale: ["Gray whale", "Eschrichtius robustus"],
  beluga: ["Beluga", "Delphinapterus leucas"],
  cuviers_beaked_whale: ["Cuvier's beaked whale", "Ziphius cavirostris"],
  killer_whale: ["Killer whale", "Orcinus orca"],
  false_killer_whale: ["False killer whale", "Pseudorca crassidens"],
  pygmy_killer_whale: ["Pygmy killer whale", "Feresa attenuata"],
  melon_headed_whale: ["Melon-headed whale", "Peponocephala electra"],
  long_finned_pilot_whale: ["Long-finned pilot whale", "Globicephala melas"],
  short_finned_pilot_whale: ["Short-finned pilot whale", "Globicephala macrorhynchus"],
  bottlenose_dolphin: ["Common bottlenose dolphin", "Tursiops truncatus"],
  common_dolphin: ["Common dolphin", "Delphinus delphis"],
  dusky_dolphin: ["Dusky dolphin", "Lagenorhynchus obscurus"],
  commersons_dolphin: ["Commerson's dolphin", "Cephalorhynchus commersonii"],
  spinner_dolphin: ["Spinner dolphin", "Stenella longirostris"],
  spotted_dolphin: ["Pantropical spotted dolphin", "Stenella attenuata"],
  rough_toothed_dolphin: ["Rough-toothed dolphin", "Steno bredanensis"],
  white_sided_dolphin: ["Pacific white-sided dolphin", "Lagenorhynchus obliquidens"],
  frasiers_dolphin: ["Fraser's dolphin", "Lagenodelphis hosei"],
};

const names = new Map(Object.entries(FALLBACK).map(([k, [common, latin]]) => [k, { common, latin }]));
const aliases = new Set(); // misspelt labels that name the same taxon as an earlier key (kiler_whale)

function titleCase(key) {
  const text = String(key || "").replace(/_/g, " ").trim();
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : "Unknown";
}

/** Remember the names a response carries (`species_common_name`, `species_scientific_name`). */
export function learnSpecies(item) {
  const key = item?.species;
  const common = item?.species_common_name;
  if (key && key !== "unknown" && common) {
    names.set(key, { common, latin: item.species_scientific_name || names.get(key)?.latin || "" });
  }
}

/** Merge the service's species list, whatever its exact shape (list of objects or a mapping). */
export async function loadSpecies() {
  let body;
  try {
    body = await api.listSpecies();
  } catch {
    return false; // no such endpoint: keep the embedded table
  }
  const entries = Array.isArray(body) ? body : Array.isArray(body?.items) ? body.items
    : body && typeof body === "object" ? Object.entries(body).map(([key, v]) => ({ key, ...v })) : [];
  const seen = new Set();
  for (const item of entries) {
    const key = item.key || item.species || item.name || item.id;
    const common = item.common_name || item.common;
    const latin = item.scientific_name || item.latin_name || item.latin;
    if (!key || !(common || latin)) continue;
    names.set(key, { common: common || titleCase(key), latin: latin || "" });
    const taxon = `${common}|${latin}`;
    if (seen.has(taxon)) aliases.add(key);
    seen.add(taxon);
  }
  return true;
}

/**
 * `{common, latin}` for a species key. A response object may carry its own names
 * (`species_common_name`, `species_scientific_name`), which win.
 */
export function speciesNames(key, source = null) {
  const common = source?.species_common_name || source?.common_name;
  const latin = source?.species_scientific_name || source?.scientific_name;
  if (common || latin) return { common: common || titleCase(key), latin: latin || "" };
  if (!key || key === "unknown") return { common: "Unknown species", latin: "" };
  return names.get(key) || { common: titleCase(key), latin: "" };
}

export function speciesText(key, source = null) {
  const { common, latin } = speciesNames(key, source);
  return latin ? `${common} (${latin})` : common;
}

export function knownSpecies() {
  return [...names.keys()].filter((k) => !aliases.has(k)).sort((a, b) => speciesNames(a).common.localeCompare(speciesNames(b).common));
}
