"""Refusing work that cannot fit, before it allocates: memory pre-flights and the image size limit.

Torch answers an impossible allocation with an out-of-memory traceback, or the kernel answers it
by killing the process; neither says which input was too big. The checks here estimate what a
forward pass needs, compare it with what this machine has free, and turn a "no" into a
``UserError`` naming the input. The estimates aim to be close, not safe-side bounds: a
refusal of work that would have fitted costs a user more than a late failure.

Images are the other door to an unbounded allocation: a small compressed file can decode to
gigabytes. Every image a user hands us is opened through ``open_image``.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
import weakref
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .arch import Arch, conv_out_size
from .errors import UserError
from .layout import block_layout

if TYPE_CHECKING:
    from PIL import Image

FLOAT32 = 4

# ------------------------------------------------------------------ what this machine has


def _meminfo_available(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    return None


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes left under this container's memory limit; None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # v1
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        # v2 says "max" for no limit; v1 says a number near 2**63.
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
        return None
    return None


def available_memory(device: object = None) -> int | None:
    """Bytes that can be allocated now on ``device`` (CPU when None); None when unknown.

    On Linux this is ``MemAvailable`` (free plus reclaimable cache), capped by the
    container's cgroup headroom, since a container sees the host's ``/proc/meminfo``.
    """
    if device is not None and str(device).startswith("cuda"):
        import torch
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks torch's caching allocator holds but does not use are free to this process.
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    found = None
    try:
        found = _meminfo_available(Path("/proc/meminfo").read_text())
    except OSError:
        pass
    if found is None:
        try:  # other POSIX systems
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            try:
                import psutil  # optional; the only portable answer on Windows
                found = int(psutil.virtual_memory().available)
            except ImportError:
                return None
    headroom = _cgroup_headroom()
    return found if headroom is None else min(found, headroom)


def format_bytes(count: float) -> str:
    """``745 GiB``, ``21.3 GiB``, ``512 MiB``: three significant digits at most."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(count), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    if value >= 100 or unit == 0:
        return f"{value:.0f} {units[unit]}"
    return f"{value:.3g} {units[unit]}"


def check_fits(needed: int, source: str, field: str, what: str, hint: str = "", device: object = None) -> None:
    """Raise a ``UserError`` when ``needed`` bytes exceed what ``device`` has free."""
    free = available_memory(device)
    if free is None or needed <= free:
        return
    where = "GPU memory" if device is not None and str(device).startswith("cuda") else "available"
    raise UserError(source, field, f"{what} needs ~{format_bytes(needed)}, {format_bytes(free)} {where}"
                                   + (f"; {hint}" if hint else ""))


# ------------------------------------------------------------------ what a bare Arch needs


def arch_forward_bytes(arch: Arch, batch: int, resolution: int) -> int:
    """Peak bytes of the entropy score's plain forward pass over ``arch`` (float32, no grad).

    Convolutions run one at a time with a fresh weight each, so the peak is the worst single
    conv: its input, its weight, its output, and one more output-sized tensor for the
    normalisation that follows (``x / std``).
    """
    peak = 0
    size = resolution
    for spec in arch.blocks:
        for inner, repeat in block_layout(spec):
            h = size
            for conv in inner.convs:
                out = conv_out_size(h, conv.stride)
                activation_in = batch * conv.in_channels * h * h
                activation_out = batch * conv.out_channels * out * out
                peak = max(peak, activation_in + conv.weight_count() + 2 * activation_out)
                h = out
            size = h  # a repeated inner block keeps its size (stride 1 after the first)
    return FLOAT32 * peak


# ------------------------------------------------------------------ images a user hands us

# A decompression-bomb guard. 150 megapixels (12,000 x 12,500) is as large as the biggest
# camera sensors, and decodes to 450 MB of RGB before any copy; a detector letterboxes every
# image to a few hundred pixels, so nothing useful is lost below it.
MAX_IMAGE_PIXELS = 150_000_000

# What PIL raises for a damaged file: most decoders say OSError, some plugins let their own
# parser errors through.
_DAMAGED = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error)


def _too_big(size: str) -> str:
    return (f"image is {size}, over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit for images "
            "(a guard against decompression bombs); downscale it first")


@contextmanager
def open_image(path: str | os.PathLike, source: str | None = None) -> Iterator[Image.Image]:
    """``PIL.Image.open`` for a file a user gave us, as a ``with`` block.

    The header is read and the pixel count checked before anything is decoded; any failure
    to read or decode inside the block is a ``UserError`` naming ``source`` (the path by
    default), so keep only image work inside it.
    """
    from PIL import Image, UnidentifiedImageError

    name = str(path) if source is None else source
    try:
        with warnings.catch_warnings():
            # PIL warns from 89 megapixels; our own limit, checked below, decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UserError(name, "", _too_big(f"{width} x {height} = {width * height / 1e6:.0f} megapixels"))
            yield image
    except Image.DecompressionBombError as err:
        # PIL refuses twice its warning limit inside ``open``, before we see the size.
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        raise UserError(name, "", _too_big(f"{int(pixels[1]) / 1e6:.0f} megapixels" if pixels else "too large")) from None
    except FileNotFoundError:
        raise UserError(name, "", "image file not found") from None
    except UnidentifiedImageError:
        raise UserError(name, "", "unreadable image (not a format PIL can read)") from None
    except _DAMAGED as err:
        detail = str(err).replace(f"'{path}'", "").strip()
        raise UserError(name, "", f"unreadable image ({err.__class__.__name__}"
                                  + (f": {detail[:120]})" if detail else ")")) from None


# The files a folder of images is read for (predict, data convert); a single file of another
# name is still tried, since PIL decides what it can read.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# EXIF orientations that turn the picture a quarter turn (the stored width is the shown height).
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112

# The bit depths integer pixels are stored in: a 16-bit container holding a 12-bit sensor's
# values is scaled by 4095, the smallest full range that holds its brightest pixel.
SENSOR_BITS = (8, 10, 12, 14, 16, 24, 32)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image, 1 when it has none (read from the header)."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DAMAGED:
        return 1  # damaged EXIF: the pixels are still the picture
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _scaled_to_uint8(values, source: str):
    """Single-channel pixels of more than 8 bits (``I;16``, ``I``, ``F``) as ``uint8``.

    Integers of a non-negative image are scaled by the smallest full range of ``SENSOR_BITS``
    that holds the brightest pixel, so black stays black and one sensor's images keep their
    relative brightness; floats in [0, 1] are scaled by 255. Anything else (negative values,
    floats past 1) is stretched from its own minimum to its maximum.
    """
    import numpy as np

    values = np.asarray(values)
    if values.size == 0:
        return values.astype(np.uint8)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise UserError(source, "", "image has NaN or infinite pixels (a float image needs finite values)")
    low, high = float(values.min()), float(values.max())
    if low >= 0 and values.dtype.kind == "f" and high <= 1:
        offset, full = 0.0, 1.0
    elif low >= 0 and values.dtype.kind != "f":
        offset, full = 0.0, float(2 ** next(b for b in SENSOR_BITS if high < 2 ** b) - 1)
    else:
        offset, full = low, (high - low) or 1.0
    scaled = (values.astype(np.float64) - offset) * (255.0 / full)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def rgb_image(image: Image.Image, source: str) -> Image.Image:
    """A decoded image as 8-bit RGB, upright: its EXIF orientation applied (as cameras, browsers
    and Ultralytics show it) and pixels of more than 8 bits scaled, not clipped, to 0..255.
    Every image the project reads for its pixels passes here."""
    from PIL import Image, ImageOps

    if exif_orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = Image.fromarray(_scaled_to_uint8(image, source))
    return image.convert("RGB")


def read_rgb(path: str | os.PathLike, source: str | None = None) -> Image.Image:
    """The whole image, decoded, upright and in 8-bit RGB (``rgb_image``), through ``open_image``."""
    name = str(path) if source is None else source
    with open_image(path, source) as image:
        image.load()
        return rgb_image(image, name)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as ``rgb_image`` shows it (after its EXIF orientation)."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in _QUARTER_TURNS else (width, height)


def image_size(path: str | os.PathLike, source: str | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, after the EXIF orientation, through ``open_image``."""
    with open_image(path, source) as image:
        return upright_size(image)
