"""Supported species: the Happywhale label, an English name and the scientific (Latin) name.

One table is the single source of truth for exports (Darwin Core `scientificName`,
`vernacularName`, `taxonRank`). Keys are the Happywhale labels, including the two misspellings
that occur in the Happywhale training data (`kiler_whale`, `bottlenose_dolpin`) and its two
genus-level pilot-whale labels (`globis`, `pilot_whale`).
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_SCIENTIFIC_NAME = "Cetacea"


@dataclass(frozen=True)
class SpeciesInfo:
    """What exports need to know about one label."""

    key: str
    common_name: str
    scientific_name: str
    taxon_rank: str = "species"


def _sp(key: str, common: str, latin: str, rank: str = "species") -> SpeciesInfo:
    return SpeciesInfo(key, common, latin, rank)


# Names follow the Society for Marine Mammalogy list as used by GBIF and OBIS. Where a Happywhale
# label is ambiguous the choice is written next to it.
SPECIES: dict[str, SpeciesInfo] = {
    s.key: s
    for s in (
        _sp("humpback_whale", "Humpback whale", "Megaptera novaeangliae"),
        _sp("blue_whale", "Blue whale", "Balaenoptera musculus"),
        _sp("fin_whale", "Fin whale", "Balaenoptera physalus"),
        _sp("sei_whale", "Sei whale", "Balaenoptera borealis"),
        _sp("brydes_whale", "Bryde's whale", "Balaenoptera edeni"),
        # Happywhale photos are mostly of the common (not the Antarctic) minke whale.
        _sp("minke_whale", "Common minke whale", "Balaenoptera acutorostrata"),
        _sp("gray_whale", "Gray whale", "Eschrichtius robustus"),
        _sp("north_atlantic_right_whale", "North Atlantic right whale", "Eubalaena glacialis"),
        _sp("southern_right_whale", "Southern right whale", "Eubalaena australis"),
        _sp("sperm_whale", "Sperm whale", "Physeter macrocephalus"),
        _sp("cuviers_beaked_whale", "Cuvier's beaked whale", "Ziphius cavirostris"),
        _sp("beluga", "Beluga", "Delphinapterus leucas"),
        _sp("killer_whale", "Killer whale", "Orcinus orca"),
        _sp("kiler_whale", "Killer whale", "Orcinus orca"),  # Happywhale misspelling
        _sp("false_killer_whale", "False killer whale", "Pseudorca crassidens"),
        _sp("pygmy_killer_whale", "Pygmy killer whale", "Feresa attenuata"),
        _sp("melon_headed_whale", "Melon-headed whale", "Peponocephala electra"),
        _sp("long_finned_pilot_whale", "Long-finned pilot whale", "Globicephala melas"),
        _sp("short_finned_pilot_whale", "Short-finned pilot whale", "Globicephala macrorhynchus"),
        _sp("pilot_whale", "Pilot whale", "Globicephala", "genus"),
        _sp("globis", "Pilot whale", "Globicephala", "genus"),  # Happywhale genus-level label
        _sp("bottlenose_dolphin", "Common bottlenose dolphin", "Tursiops truncatus"),
        _sp("bottlenose_dolpin", "Common bottlenose dolphin", "Tursiops truncatus"),  # misspelling
        _sp("common_dolphin", "Common dolphin", "Delphinus delphis"),
        _sp("dusky_dolphin", "Dusky dolphin", "Lagenorhynchus obscurus"),
        # Happywhale does not say which white-sided dolphin; its label is mapped to the Atlantic one.
        _sp("white_sided_dolphin", "Atlantic white-sided dolphin", "Lagenorhynchus acutus"),
        _sp("commersons_dolphin", "Commerson's dolphin", "Cephalorhynchus commersonii"),
        _sp("spinner_dolphin", "Spinner dolphin", "Stenella longirostris"),
        # `pantropic_spotted_dolphin` is its own label, so plain `spotted_dolphin` is the Atlantic one.
        _sp("spotted_dolphin", "Atlantic spotted dolphin", "Stenella frontalis"),
        _sp("pantropic_spotted_dolphin", "Pantropical spotted dolphin", "Stenella attenuata"),
        _sp("rough_toothed_dolphin", "Rough-toothed dolphin", "Steno bredanensis"),
        _sp("frasiers_dolphin", "Fraser's dolphin", "Lagenodelphis hosei"),
    )
}


def normalise_species_key(name: str) -> str:
    """`"Humpback Whale"`, `"humpback-whale"` and `"humpback_whale"` are the same label."""
    return "_".join(name.strip().lower().replace("-", " ").replace("'", "").split())


def species_info(name: str | None) -> SpeciesInfo:
    """Look a label up; unknown or empty labels map to the infraorder *Cetacea*.

    Args:
        name: a Happywhale label (any case, spaces or hyphens allowed) or None.

    Returns:
        The table entry, or `SpeciesInfo(key, "Cetacean", "Cetacea", "infraorder")`.
    """
    key = normalise_species_key(name or "")
    found = SPECIES.get(key)
    if found is not None:
        return found
    return SpeciesInfo(key, "Cetacean", UNKNOWN_SCIENTIFIC_NAME, "infraorder")


def list_species() -> list[SpeciesInfo]:
    """Every supported label, sorted by key."""
    return [SPECIES[k] for k in sorted(SPECIES)]
