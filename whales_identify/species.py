"""Supported species: the Happywhale label, an English name, the scientific (Latin) name and its
WoRMS AphiaID.

One table is the single source of truth for exports (Darwin Core `scientificName`,
`scientificNameID`, `vernacularName`, `taxonRank`). Keys are the Happywhale labels, including the
two misspellings that occur in the Happywhale training data (`kiler_whale`, `bottlenose_dolpin`) and
its two genus-level pilot-whale labels (`globis`, `pilot_whale`).

`scientificNameID` is the WoRMS (World Register of Marine Species) LSID
`urn:lsid:marinespecies.org:taxname:<AphiaID>`, the identifier OBIS matches names by. The AphiaIDs
were checked against WoRMS records (OBIS checklist output, WoRMS/PESI pages) except those in
`APHIA_IDS_TO_CONFIRM`: those follow WoRMS's numbering of the cetacean species (alphabetical within
each family, between checked neighbours) but were not seen in a WoRMS record; an operator publishing
them should look them up once at marinespecies.org (docs/DARWIN_CORE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_SCIENTIFIC_NAME = "Cetacea"
UNKNOWN_APHIA_ID = 2688  # Cetacea Brisson, 1762 (infraorder)
WORMS_LSID_PREFIX = "urn:lsid:marinespecies.org:taxname:"

# AphiaIDs not seen in a WoRMS record (see the module docstring): inferred from WoRMS's numbering
# (137088 and 137091 lie between the checked 137087, 137089, 137090 and 137092; 137095..137110 between
# the checked 137094, 137098, 137102, 137108 and 137111; 137115 after the checked 137112) or, for
# 254975 (Cephalorhynchus commersonii), recalled only: the least certain.
APHIA_IDS_TO_CONFIRM = frozenset({137095, 137096, 137097, 137099, 137100, 137103, 137104, 137105, 137109,
                                  137110, 137115, 137088, 137091, 254975})


@dataclass(frozen=True)
class SpeciesInfo:
    """What exports need to know about one label."""

    key: str
    common_name: str
    scientific_name: str
    taxon_rank: str = "species"
    aphia_id: int = UNKNOWN_APHIA_ID

    @property
    def scientific_name_id(self) -> str:
        """The WoRMS LSID of the name (Darwin Core `scientificNameID`)."""
        return f"{WORMS_LSID_PREFIX}{self.aphia_id}"


def _sp(key: str, common: str, latin: str, aphia_id: int, rank: str = "species") -> SpeciesInfo:
    return SpeciesInfo(key, common, latin, rank, aphia_id)


# Names follow the Society for Marine Mammalogy list as used by GBIF and OBIS. Where a Happywhale
# label is ambiguous the choice is written next to it.
SPECIES: dict[str, SpeciesInfo] = {
    s.key: s
    for s in (
        _sp("humpback_whale", "Humpback whale", "Megaptera novaeangliae", 137092),
        _sp("blue_whale", "Blue whale", "Balaenoptera musculus", 137090),
        _sp("fin_whale", "Fin whale", "Balaenoptera physalus", 137091),
        _sp("sei_whale", "Sei whale", "Balaenoptera borealis", 137088),
        _sp("brydes_whale", "Bryde's whale", "Balaenoptera edeni", 137089),
        # Happywhale photos are mostly of the common (not the Antarctic) minke whale.
        _sp("minke_whale", "Common minke whale", "Balaenoptera acutorostrata", 137087),
        _sp("gray_whale", "Gray whale", "Eschrichtius robustus", 137112),
        _sp("north_atlantic_right_whale", "North Atlantic right whale", "Eubalaena glacialis", 159023),
        _sp("southern_right_whale", "Southern right whale", "Eubalaena australis", 220222),
        _sp("sperm_whale", "Sperm whale", "Physeter macrocephalus", 137119),
        _sp("cuviers_beaked_whale", "Cuvier's beaked whale", "Ziphius cavirostris", 137127),
        _sp("beluga", "Beluga", "Delphinapterus leucas", 137115),
        _sp("killer_whale", "Killer whale", "Orcinus orca", 137102),
        _sp("kiler_whale", "Killer whale", "Orcinus orca", 137102),  # Happywhale misspelling
        _sp("false_killer_whale", "False killer whale", "Pseudorca crassidens", 137104),
        _sp("pygmy_killer_whale", "Pygmy killer whale", "Feresa attenuata", 137095),
        _sp("melon_headed_whale", "Melon-headed whale", "Peponocephala electra", 137103),
        _sp("long_finned_pilot_whale", "Long-finned pilot whale", "Globicephala melas", 137097),
        _sp("short_finned_pilot_whale", "Short-finned pilot whale", "Globicephala macrorhynchus", 137096),
        _sp("pilot_whale", "Pilot whale", "Globicephala", 137017, "genus"),
        _sp("globis", "Pilot whale", "Globicephala", 137017, "genus"),  # Happywhale genus-level label
        _sp("bottlenose_dolphin", "Common bottlenose dolphin", "Tursiops truncatus", 137111),
        _sp("bottlenose_dolpin", "Common bottlenose dolphin", "Tursiops truncatus", 137111),  # misspelling
        _sp("common_dolphin", "Common dolphin", "Delphinus delphis", 137094),
        _sp("dusky_dolphin", "Dusky dolphin", "Lagenorhynchus obscurus", 231434),
        # Happywhale does not say which white-sided dolphin; its label is mapped to the Atlantic one.
        _sp("white_sided_dolphin", "Atlantic white-sided dolphin", "Lagenorhynchus acutus", 137100),
        _sp("commersons_dolphin", "Commerson's dolphin", "Cephalorhynchus commersonii", 254975),
        _sp("spinner_dolphin", "Spinner dolphin", "Stenella longirostris", 137109),
        # `pantropic_spotted_dolphin` is its own label, so plain `spotted_dolphin` is the Atlantic one.
        _sp("spotted_dolphin", "Atlantic spotted dolphin", "Stenella frontalis", 137108),
        _sp("pantropic_spotted_dolphin", "Pantropical spotted dolphin", "Stenella attenuata", 137105),
        _sp("rough_toothed_dolphin", "Rough-toothed dolphin", "Steno bredanensis", 137110),
        _sp("frasiers_dolphin", "Fraser's dolphin", "Lagenodelphis hosei", 137099),
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
        The table entry, or `SpeciesInfo(key, "Cetacean", "Cetacea", "infraorder", 2688)`.
    """
    key = normalise_species_key(name or "")
    found = SPECIES.get(key)
    if found is not None:
        return found
    return SpeciesInfo(key, "Cetacean", UNKNOWN_SCIENTIFIC_NAME, "infraorder", UNKNOWN_APHIA_ID)


def list_species() -> list[SpeciesInfo]:
    """Every supported label, sorted by key."""
    return [SPECIES[k] for k in sorted(SPECIES)]
