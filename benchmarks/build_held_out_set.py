#!/usr/bin/env python3
"""Build a held-out check set for ``stolentee bench quality``: the graphic categories again,
from sources the development set (``build_eval_set.py``) never uses.

The engine's thresholds (colour key, soft shadows, the texture test) were chosen on the
development set, so its figures flatter them. This set is built the same way (same categories,
sizes, backgrounds, compositing and manifest; ``build_eval_set.py`` does the work) from other
artwork, so that the same figures on it show how well those choices carry over:

* emoji: Debian ``fonts-noto-color-emoji`` (Noto Color Emoji, a 109 px bitmap font, upscaled),
  SIL OFL 1.1; instead of OpenMoji;
* icons: Debian ``adwaita-icon-theme``, its 512x512 full-colour PNG icons, LGPL-3 / CC BY-SA 3.0;
  instead of Oxygen;
* clip art: Debian ``tuxpaint-stamps-default``, Tux Paint's stamps (PNG with alpha), GPL-2+;
  instead of Scratch's costumes;
* textures: Debian ``mate-backgrounds``, the nature photographs, GPL-2+; instead of
  scikit-image's brick, grass and gravel. Gradients are generated as before.

There is no photo category here (no photographic cutout source is held out). Measure it with::

    .venv/bin/python benchmarks/build_held_out_set.py --fetch
    .venv/bin/stolentee bench quality --vs rembg --data benchmarks/data-held-out \\
        --category graphic-solid --category graphic-gradient

and do not tune against it: a threshold changed because of this set makes it a second
development set. ``--fetch`` runs ``apt-get download`` and unpacks the four packages into
``benchmarks/data-held-out/_sources`` without installing anything.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_eval_set as dev  # the development set's builder, reused

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data-held-out"
DEFAULT_SEED = 20261129
CATEGORIES = ("graphic-solid", "graphic-gradient")
NOTO_SIZE_PX = 109  # the one size of Noto Color Emoji's bitmaps
ADWAITA_CONTEXTS = ("devices", "emblems", "mimetypes", "places", "status")


@dataclass(frozen=True)
class HeldOutPackage(dev.Package):
    relative: str = ""  # the folder used, inside the package


PACKAGES = (
    HeldOutPackage(
        "fonts-noto-color-emoji",
        "debian",
        "SIL OFL 1.1",
        "emoji (CBDT bitmap font)",
        relative="usr/share/fonts/truetype/noto",
    ),
    HeldOutPackage(
        "adwaita-icon-theme",
        "debian",
        "LGPL-3 or CC BY-SA 3.0",
        "512x512 colour icons",
        relative="usr/share/icons/Adwaita/512x512",
    ),
    HeldOutPackage(
        "tuxpaint-stamps-default",
        "debian",
        "GPL-2+",
        "clip-art stamps with alpha",
        relative="usr/share/tuxpaint/stamps",
    ),
    HeldOutPackage(
        "mate-backgrounds",
        "debian",
        "GPL-2+",
        "nature photographs",
        relative="usr/share/backgrounds/mate/nature",
    ),
)


@dataclass
class HeldOutSources:
    folders: dict[str, Path]
    versions: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)


def locate(cache: Path) -> HeldOutSources:
    """Each package's folder, installed or unpacked in ``cache``; raise naming the fix."""
    folders: dict[str, Path] = {}
    versions: dict[str, str] = {}
    origins: dict[str, str] = {}
    problems: list[str] = []
    for package in PACKAGES:
        system = Path("/") / package.relative
        version = dev._deb_version(package.name)
        unpacked = cache / package.name / package.relative
        if version is not None and system.is_dir():
            folders[package.name], versions[package.name] = system, version
            origins[package.name] = f"installed ({system})"
        elif unpacked.is_dir():
            folders[package.name] = unpacked
            versions[package.name] = dev._read_version_file(cache / package.name)
            origins[package.name] = f"unpacked .deb ({unpacked})"
        else:
            problems.append(f"{package.name} (Debian): neither {system} nor {unpacked} exists")
    if problems:
        names = " ".join(p.name for p in PACKAGES)
        raise dev.MissingSourcesError(
            "missing sources for the held-out set:\n  - "
            + "\n  - ".join(problems)
            + f"\nInstall them with:\n  apt-get install --no-install-recommends {names}\n"
            f"or download and unpack them (nothing is installed) into {cache} with:\n"
            "  .venv/bin/python benchmarks/build_held_out_set.py --fetch"
        )
    return HeldOutSources(folders, versions, origins)


def fetch(cache: Path) -> None:
    """``apt-get download`` and unpack every package not yet in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for package in PACKAGES:
            target = cache / package.name
            if (target / "VERSION").exists():
                continue
            print(f"fetch: apt-get download {package.name}", flush=True)
            dev._run(["apt-get", "download", package.name], cwd=work)
            deb = next(work.glob(f"{package.name}_*.deb"))
            version = dev._run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
            shutil.rmtree(target, ignore_errors=True)
            dev._run(["dpkg-deb", "-x", str(deb), str(target)])
            (target / "VERSION").write_text(version + "\n")
            deb.unlink()


class NotoEmoji(dev.EmojiRenderer):
    """Noto Color Emoji glyphs: bitmaps of one size, which the builder scales like icons."""

    def cutout(self, codepoint: int, size_px: int) -> dev.Cutout:
        image = self.render(codepoint, NOTO_SIZE_PX)
        return dev.Cutout(
            image,
            "fonts-noto-color-emoji",
            f"NotoColorEmoji.ttf U+{codepoint:04X}",
            dev._white_share(image),
        )


def _png_groups(root: Path, groups: Sequence[str] | None) -> list[list[Path]]:
    """The PNG files under ``root``, one list per sub-folder (or per named context)."""
    folders = [root / name for name in groups] if groups else sorted(root.iterdir())
    found = [
        [p for p in sorted(folder.rglob("*.png")) if not p.is_symlink()]
        for folder in folders
        if folder.is_dir()
    ]
    return [group for group in found if group]


class HeldOutBuilder(dev.Builder):
    """``build_eval_set.Builder`` with the held-out artwork and texture photos."""

    def __init__(self, sources: HeldOutSources, seed: int) -> None:
        self.seed = seed
        self.folders = sources.folders
        self.emoji = NotoEmoji(sources.folders["fonts-noto-color-emoji"] / "NotoColorEmoji.ttf")
        self.icons = _png_groups(sources.folders["adwaita-icon-theme"], ADWAITA_CONTEXTS)
        self.stamps = _png_groups(sources.folders["tuxpaint-stamps-default"], None)
        self.textures = sorted(sources.folders["mate-backgrounds"].glob("*.jpg"))
        if not (self.emoji.codepoints and self.icons and self.stamps and self.textures):
            raise dev.MissingSourcesError("a held-out package is present but holds no images")

    def rng(self, category: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, CATEGORIES.index(category)])

    def texture(
        self, rng: np.random.Generator, size: tuple[int, int]
    ) -> tuple[dev.U8, dict[str, Any]]:
        """A crop of a nature photograph (large already: cropped and scaled, not tiled)."""
        path = self.textures[int(rng.integers(len(self.textures)))]
        background = {"kind": "texture", "package": "mate-backgrounds", "file": path.name}
        return dev.photo_background(path, size, rng), background

    def graphic(self, rng: np.random.Generator, kind: str, size_px: int, white: bool) -> dev.Cutout:
        for _ in range(400):
            if kind == "emoji":
                codepoint = self.emoji.codepoints[int(rng.integers(len(self.emoji.codepoints)))]
                cut = self.emoji.cutout(codepoint, size_px)
            else:
                groups = self.icons if kind == "icon" else self.stamps
                group = groups[int(rng.integers(len(groups)))]
                path = group[int(rng.integers(len(group)))]
                package = "adwaita-icon-theme" if kind == "icon" else "tuxpaint-stamps-default"
                with Image.open(path) as image:
                    cut = dev._cutout(image, package, str(path.relative_to(self.folders[package])))
            if cut.image.width < 24 or cut.image.height < 24:
                continue
            coverage = float((np.asarray(cut.image)[..., 3] > 127).mean())
            if coverage > 0.97:
                continue
            if white and cut.white_share < 0.12:
                continue
            return cut
        raise dev.MissingSourcesError(f"no suitable {kind} graphic found")


def build(
    out: Path, sources: HeldOutSources, seed: int, per_category: int, log: Callable[[str], None]
) -> Path:
    return dev.write_set(
        out,
        HeldOutBuilder(sources, seed),
        CATEGORIES,
        seed=seed,
        per_category=per_category,
        packages=dev.package_entries(PACKAGES, sources.versions, sources.origins),
        log=log,
        extra={"held_out": True},
    )


def main(argv: Sequence[str] | None = None) -> int:
    return dev.run(
        argv,
        description=__doc__.split("\n\n")[0],
        default_out=DEFAULT_OUT,
        default_seed=DEFAULT_SEED,
        packages=PACKAGES,
        fetch=fetch,
        locate=locate,
        build=build,
    )


if __name__ == "__main__":
    sys.exit(main())
