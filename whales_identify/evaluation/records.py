"""Query records on disk: the expensive part of an evaluation (matching every query) done once.

A record keeps the per-candidate evidence of one query (global cosine, vote, inliers of the
candidates worth re-fusing), so fusions, calibrations and splits can be compared on exactly the
same queries in seconds (`whales evaluate --records-out` / `--from-records`). One .npz, no pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from whales_identify.evaluation.metrics import QueryRecord
from whales_identify.reid.matching import Scores

FORMAT_VERSION = 1


def save_records(records: Sequence[QueryRecord], path: str | os.PathLike[str],
                 meta: dict | None = None) -> None:
    """Write the records (and `meta`, e.g. the model and manifest they came from) to one .npz."""
    heads, ids, species, cos, vote, inl, refs, offsets = [], [], [], [], [], [], [], [0]
    for q in records:
        s = q.scores
        heads.append({"relpath": q.relpath, "individual_id": q.individual_id, "species": q.species,
                      "source": q.source, "split": q.split, "mode": q.mode, "seconds": q.seconds,
                      "neighbour_species": [[sp, float(v)] for sp, v in s.neighbour_species]})
        ids += list(s.individual_ids)
        species += list(s.species)
        cos.append(np.asarray(s.cos, np.float64))
        vote.append(np.asarray(s.vote, np.float64))
        inl.append(np.asarray(s.inliers, np.float64))
        refs += [s.image_ids[int(j)] for j in s.ref_image]
        offsets.append(len(ids))
    header = {"format_version": FORMAT_VERSION, "meta": meta or {}, "records": heads}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh, header=np.array(json.dumps(header)), ids=np.array(ids, dtype=str),
            species=np.array(species, dtype=str), refs=np.array(refs, dtype=str),
            cos=_cat(cos), vote=_cat(vote), inliers=_cat(inl), offsets=np.array(offsets, np.int64))


def load_records(path: str | os.PathLike[str]) -> tuple[list[QueryRecord], dict]:
    """(records, meta) written by `save_records`."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: records format {header.get('format_version')}, expected "
                             f"{FORMAT_VERSION}")
        ids, species, refs = data["ids"].tolist(), data["species"].tolist(), data["refs"].tolist()
        cos, vote, inl, off = data["cos"], data["vote"], data["inliers"], data["offsets"]
    out = []
    for i, h in enumerate(header["records"]):
        a, b = int(off[i]), int(off[i + 1])
        scores = Scores(ids[a:b], species[a:b], cos[a:b].copy(), vote[a:b].copy(), inl[a:b].copy(),
                        np.arange(b - a, dtype=np.int64), refs[a:b],
                        [(sp, float(v)) for sp, v in h["neighbour_species"]])
        out.append(QueryRecord(h["relpath"], h["individual_id"], h["species"], h["source"], h["split"],
                               h["mode"], scores, float(h["seconds"])))
    return out, dict(header.get("meta") or {})


def merge_records(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[QueryRecord], dict]:
    """(records, meta) of several record files of ONE protocol, e.g. the folds of a cross-fit run
    one at a time (`--partial-crossfit`): same model id, manifest and matching config, and no
    query twice. The cross-fit metadata is pooled (fold models, scored folds, partial or not)."""
    if not paths:
        raise ValueError("no record file given")
    records, meta = load_records(paths[0])
    seen = {(q.relpath, q.mode) for q in records}
    for path in paths[1:]:
        more, other = load_records(path)
        for key in ("model_id", "manifest_sha256", "config", "limit"):
            if other.get(key) != meta.get(key):
                raise ValueError(f"{path}: its {key} differs from {paths[0]}'s: records of different "
                                 f"runs cannot be pooled")
        twice = seen & {(q.relpath, q.mode) for q in more}
        if twice:
            raise ValueError(f"{path}: {len(twice)} queries are already in an earlier file "
                             f"(e.g. {sorted(twice)[0][0]})")
        seen |= {(q.relpath, q.mode) for q in more}
        records += more
        meta["crossfit"] = _pool_crossfit(meta.get("crossfit"), other.get("crossfit"), path)
    return records, meta


def _pool_crossfit(a: dict | None, b: dict | None, path: str | os.PathLike[str]) -> dict | None:
    if a is None and b is None:
        return None
    if a is None or b is None or a.get("folds") != b.get("folds") or a.get("salt") != b.get("salt"):
        raise ValueError(f"{path}: not the same cross-fit (folds and salt) as the first file")
    scored = sorted(set(a.get("scored_folds", range(a["folds"])))
                    | set(b.get("scored_folds", range(b["folds"]))))
    models = list(dict.fromkeys([*a.get("fold_models", []), *b.get("fold_models", [])]))
    return {**a, "fold_models": models, "scored_folds": scored, "partial": len(scored) < a["folds"]}


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)
