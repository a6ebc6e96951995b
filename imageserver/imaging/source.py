"""What an original is (its header's facts) and the limits it is checked against."""
from __future__ import annotations

from dataclasses import dataclass

from imageserver.core.settings import Settings
from imageserver.imaging.formats import CONTENT_TYPES


@dataclass(frozen=True)
class SourceInfo:
    """What an original is, as displayed (after EXIF orientation)."""
    coder: str
    width: int
    height: int
    frames: int = 1
    scans: int = 1         # a progressive JPEG's scans, each read over the whole picture
    components: int = 3    # a JPEG's colour components (1: grey)
    transposed: bool = False   # stored turned by 90 degrees (EXIF orientation 5..8)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.coder]


@dataclass(frozen=True)
class Limits:
    """Bounds on what is decoded and made, from the settings."""
    maximum_pixels: int = 50_000_000
    maximum_side: int = 16_000
    maximum_frames: int = 300
    maximum_full_size_pixels: int = 25_000_000
    maximum_request_ms: int = 4_000
    maximum_scans: int = 100
    decoded_cache_pixels: int = 4_000_000    # see decoded.py

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.maximum_source_pixels, settings.maximum_source_side,
                   settings.maximum_frames, settings.maximum_full_size_pixels,
                   settings.maximum_request_ms, settings.maximum_scans, settings.decoded_cache_pixels)

    @property
    def maximum_animation_pixels(self) -> int:
        """All the frames of an animation together: each frame is decoded at once."""
        return ANIMATION_FACTOR * self.maximum_pixels


# An animation may hold this many times the pixels of the largest still image, in all its frames:
# every frame is decoded at once (8 bytes a pixel), so at 1 an animation needs no more memory than
# the largest still (at 2, 300 frames of 577x577 took a worker to 876 MiB).
ANIMATION_FACTOR = 1
