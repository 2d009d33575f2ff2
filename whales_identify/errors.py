"""Domain exceptions. The service maps each one to a single JSON error shape."""

from __future__ import annotations


class WhalesError(Exception):
    """Base class for every error the library raises on purpose."""

    code = "whales_error"


class InvalidImageError(WhalesError):
    """The bytes are not a decodable image, or the image breaks a safety limit."""

    code = "invalid_image"


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""

    code = "image_too_large"


class ModelNotAvailableError(WhalesError):
    """A configured model's weights are missing; the message names the file and the fix."""

    code = "model_not_available"


class ModelIntegrityError(ModelNotAvailableError):
    """Weights exist but fail sha256 verification or strict key/shape loading."""

    code = "model_integrity"


class UnknownModelError(WhalesError, KeyError):
    """A model id that is not in the registry."""

    code = "unknown_model"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else self.code


class CatalogModelMismatchError(WhalesError):
    """The catalog was indexed with another embedding model; re-index before comparing."""

    code = "catalog_model_mismatch"


class NotFoundError(WhalesError):
    """A catalog record (individual, image, prediction) does not exist."""

    code = "not_found"


class ConflictError(WhalesError):
    """A write that lost to another one (a prediction already reviewed, an id already taken)."""

    code = "conflict"
