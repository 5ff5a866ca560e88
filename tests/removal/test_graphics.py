"""The colour-key path on generated artwork with known ground truth."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from stolentee.config import EngineSettings
from stolentee.errors import ConfigurationError
from stolentee.removal import models
from stolentee.removal.base import ImageKind
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.imaging import border, graphics, shadows

from .conftest import PHOTOS, SKIMAGE_DATA, composite, draw_logo, encode, iou


def cut(image: Image.Image) -> tuple[border.BorderAnalysis, graphics.GraphicCut]:
    pixels = np.asarray(image.convert("RGB"))
    analysis = border.analyse_border(pixels)
    return analysis, graphics.colour_key(pixels, analysis)


@pytest.mark.parametrize("background", [(255, 255, 255), (40, 170, 90), (0, 0, 0)])
def test_logo_on_solid_colour(background: tuple[int, int, int]) -> None:
    logo = draw_logo()
    truth = np.asarray(logo.getchannel("A"))
    analysis, result = cut(composite(logo, background))
    assert analysis.is_plain and not analysis.is_gradient
    assert iou(result.alpha, truth) >= 0.99
    assert np.abs(result.alpha.astype(float) - truth).mean() / 255 <= 0.004


def test_anti_aliased_edges_get_partial_alpha() -> None:
    logo = draw_logo()
    truth = np.asarray(logo.getchannel("A")).astype(float)
    _, result = cut(composite(logo, (255, 255, 255)))
    edge = (truth > 20) & (truth < 235)
    assert edge.sum() > 500
    ours = result.alpha.astype(float)[edge]
    assert np.abs(ours - truth[edge]).mean() < 40  # tracks the true coverage, not 0/255
    assert ((ours > 0) & (ours < 255)).mean() > 0.5


def test_white_text_inside_artwork_stays() -> None:
    """Background-coloured regions enclosed by artwork are kept (white text in a badge)."""
    logo = draw_logo()
    _, result = cut(composite(logo, (255, 255, 255)))
    letters = np.asarray(logo)[..., :3].min(axis=2) > 240  # the white "TEE" pixels
    letters &= np.asarray(logo.getchannel("A")) == 255
    assert letters.sum() > 200
    assert (result.alpha[letters] == 255).mean() > 0.99


def test_edges_are_decontaminated() -> None:
    """Black artwork on white: semi-transparent edge pixels are black, not grey."""
    size = 4
    big = Image.new("RGBA", (400 * size, 200 * size), (0, 0, 0, 0))
    font = ImageFont.load_default(size=120 * size)
    ImageDraw.Draw(big).text((20 * size, 20 * size), "Hi!", fill=(0, 0, 0, 255), font=font)
    art = big.resize((400, 200), Image.Resampling.LANCZOS)
    on_white = composite(art, (255, 255, 255))
    _, result = cut(on_white)
    partial = (result.alpha > 30) & (result.alpha < 225)
    assert partial.sum() > 100
    grey_before = np.asarray(on_white)[partial].mean()
    after = result.rgb[partial].mean()
    assert grey_before > 100  # the composite's edges are tinted by the white background
    assert after < 40


def test_near_white_artwork_on_white() -> None:
    art = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(art).rectangle([60, 60, 240, 240], fill=(236, 236, 236, 255))
    _, result = cut(composite(art, (255, 255, 255)))
    assert (result.alpha[70:230, 70:230] == 255).all()
    assert (result.alpha[:50] == 0).all()
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99


def shadowed_logo(size: tuple[int, int] = (600, 400), *, opacity: float = 0.55) -> Image.Image:
    """draw_logo over a soft black drop shadow of its own silhouette (offset and blurred)."""
    from PIL import ImageChops, ImageFilter

    logo = draw_logo(size)
    silhouette = ImageChops.offset(logo.getchannel("A"), 12, 14).filter(
        ImageFilter.GaussianBlur(10)
    )
    shadow = Image.new("RGBA", size, (0, 0, 0, 0))
    shadow.putalpha(silhouette.point(lambda value: round(value * opacity)))
    return Image.alpha_composite(shadow, logo)


@pytest.mark.parametrize("background", [(255, 255, 255), (150, 205, 240)])
def test_soft_shadow_becomes_translucent_black(
    background: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drop shadow is a darker shade of the background: it is cut as black at the shadow's
    own opacity (alpha 1 - shade), not kept as opaque grey, and the logo stays opaque. (What
    is left of the error: the shadow's faint tail, within the key's tolerance of the
    background, and the logo's anti-aliased rim over the shadow.)"""
    art = shadowed_logo()
    truth = np.asarray(art.getchannel("A")).astype(float)
    logo_alpha = np.asarray(draw_logo().getchannel("A"))
    image = composite(art, background)
    with monkeypatch.context() as patched:
        patched.setattr(graphics, "soft_shadows", lambda *args: 0)
        _, without = cut(image)
    _, result = cut(image)
    shadow_only = (logo_alpha == 0) & (truth > 40)
    assert shadow_only.sum() > 2000
    ours = result.alpha.astype(float)
    assert np.abs(ours[shadow_only] - truth[shadow_only]).mean() < 10
    assert (ours[shadow_only] < 250).mean() > 0.95  # translucent, not opaque grey
    assert (result.rgb[shadow_only & (ours > 40)].max(axis=1) <= 12).mean() > 0.95  # black
    assert (result.alpha[logo_alpha == 255] == 255).mean() > 0.99
    assert iou(result.alpha, truth) >= 0.98 > iou(without.alpha, truth)
    assert shadow_pass_again(image)[1] > 2000  # the helper below sees shadows where they are
    error = np.abs(ours - truth).mean() / 255
    assert error <= 0.01 and error <= 0.5 * np.abs(without.alpha - truth).mean() / 255


def shadow_pass_again(image: Image.Image) -> tuple[graphics.GraphicCut, int]:
    """The key of ``image`` and how many pixels the shadow pass changes when run on it again:
    more than 0 when it took something for a shadow (the image's pixels are unchanged)."""
    pixels = np.asarray(image.convert("RGB"))
    analysis = border.analyse_border(pixels)
    key = graphics.colour_key(pixels, analysis)
    is_bg = np.where(key.alpha == 0, 255, 0).astype(np.uint8)
    changed = shadows.soft_shadows(pixels, is_bg, analysis, key.alpha.copy(), key.rgb.copy())
    return key, changed


def test_grey_artwork_with_edges_is_not_a_shadow() -> None:
    """A grey disc is a shade of a white background too, but its anti-aliased edge is steep:
    the shadow search stops there and the disc stays opaque."""
    size = 4
    big = Image.new("RGBA", (300 * size, 300 * size), (0, 0, 0, 0))
    ImageDraw.Draw(big).ellipse([60 * size, 60 * size, 240 * size, 240 * size], (165,) * 3 + (255,))
    disc = big.resize((300, 300), Image.Resampling.LANCZOS)
    key, changed = shadow_pass_again(composite(disc, (255, 255, 255)))
    assert changed == 0
    inside = np.asarray(disc.getchannel("A")) == 255
    assert (key.alpha[inside] == 255).mean() > 0.98  # the band's own rim aside


def test_large_soft_grey_shape_is_artwork() -> None:
    """A soft-edged light grey blob that is the whole artwork is not taken for its own shadow
    (a shadow region is at most a share of the artwork)."""
    y, x = np.mgrid[0:400, 0:400]
    r = np.hypot(x - 200, y - 200) / 150
    shade = np.clip(150 + 120 * np.clip(r, 0, 1) ** 2, 0, 255)  # grey centre, lighter rim
    coverage = np.clip((1.15 - r) / 0.3, 0, 1)  # soft edge over ~45 px
    pixels = (255 * (1 - coverage) + shade * coverage).round().astype(np.uint8)
    image = Image.fromarray(np.dstack([pixels] * 3))
    _, result = cut(image)
    assert (result.alpha[r < 0.8] == 255).mean() > 0.99


def test_no_shadow_search_on_dark_backgrounds() -> None:
    _, changed = shadow_pass_again(composite(shadowed_logo(), (20, 20, 24)))
    assert changed == 0


def glowing_panel(outline: tuple[int, int, int] | None = None) -> tuple[Image.Image, np.ndarray]:
    """A blue rounded panel (optionally with a 6 px outline) over a glow of black that is soft
    far out and steep right at the panel's edge (a wide and a tight blur of its silhouette),
    like the drop shadows of many icon themes; returns it and the panel's own alpha."""
    from PIL import ImageFilter

    width, height, scale = 600, 400, 4
    big = Image.new("RGBA", (width * scale, height * scale), (0, 0, 0, 0))
    ImageDraw.Draw(big).rounded_rectangle(
        [150 * scale, 100 * scale, 450 * scale, 300 * scale],
        radius=30 * scale,
        fill=(40, 110, 220, 255),
        outline=None if outline is None else (*outline, 255),
        width=6 * scale,
    )
    panel = big.resize((width, height), Image.Resampling.LANCZOS)
    silhouette = panel.getchannel("A")
    wide, tight = (
        np.asarray(silhouette.filter(ImageFilter.GaussianBlur(radius)), dtype=float) / 255 * 0.5
        for radius in (14, 2)
    )
    glow = np.zeros((height, width, 4), dtype=np.uint8)
    glow[..., 3] = np.round((1 - (1 - wide) * (1 - tight)) * 255)
    art = Image.alpha_composite(Image.fromarray(glow, "RGBA"), panel)
    return art, np.asarray(silhouette)


def test_shadow_rim_next_to_the_artwork_is_translucent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The glow's last pixels before the panel are too steep for the shadow search; they are
    still shadow (alpha under 0.5), taken by the rim growth, not kept as an opaque grey ring."""
    art, panel = glowing_panel()
    truth = np.asarray(art.getchannel("A")).astype(float)
    image = composite(art, (255, 255, 255))
    with monkeypatch.context() as patched:
        patched.setattr(shadows, "_shadow_rim", lambda *args: [])
        _, without = cut(image)
    _, result = cut(image)
    rim = (panel == 0) & (truth > 60) & (truth < 128)
    assert rim.sum() > 500
    assert (without.alpha[rim] > 127).mean() > 0.3  # the ring the rim growth is for
    assert (result.alpha[rim] > 127).mean() < 0.02
    assert np.abs(result.alpha[rim] - truth[rim]).mean() < 10
    assert (result.alpha[panel == 255] == 255).mean() > 0.99
    error = np.abs(result.alpha - truth).mean() / 255
    assert error < 0.6 * np.abs(without.alpha - truth).mean() / 255


def test_grey_outline_next_to_a_shadow_stays_opaque() -> None:
    """A flat grey outline is a shade of a white background and darker than the glow beside
    it, but it does not keep darkening: the rim stops after its first, anti-aliased pixel."""
    art, panel = glowing_panel(outline=(110, 110, 110))
    _, result = cut(composite(art, (255, 255, 255)))
    solid = (panel == 255).astype(np.uint8)
    outline = (solid == 1) & (cv2.erode(solid, np.ones((11, 11), np.uint8)) == 0)
    assert outline.sum() > 4000
    assert (result.alpha[outline] == 255).mean() > 0.85
    assert (result.alpha[panel == 255] == 255).mean() > 0.98


def face_over_shadow(
    box: tuple[int, int, int, int],
    grey: int = 215,
    spot: tuple[int, int, int, int] = (280, 240, 500, 325),
    blur: int = 12,
) -> tuple[Image.Image, np.ndarray]:
    """A flat light grey rectangle ``box`` (a shade of white itself, its edges softened by a
    1 px blur) over a soft black shadow, the ellipse ``spot`` blurred by ``blur``, at its lower
    right; returns it and the face's alpha."""
    from PIL import ImageFilter

    width, height, scale = 600, 400, 4
    big = Image.new("RGBA", (width * scale, height * scale), (0, 0, 0, 0))
    ImageDraw.Draw(big).rectangle([v * scale for v in box], fill=(grey, grey, grey, 255))
    face = big.resize((width, height), Image.Resampling.LANCZOS)
    face.putalpha(face.getchannel("A").filter(ImageFilter.GaussianBlur(1)))
    ellipse = Image.new("L", (width, height), 0)
    ImageDraw.Draw(ellipse).ellipse(spot, fill=255)
    shadow = np.zeros((height, width, 4), dtype=np.uint8)
    shadow[..., 3] = np.round(np.asarray(ellipse.filter(ImageFilter.GaussianBlur(blur))) * 0.35)
    art = Image.alpha_composite(Image.fromarray(shadow, "RGBA"), face)
    return art, np.asarray(face.getchannel("A"))


def test_shadow_joined_to_a_light_face_is_split_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The face's edges are too gentle for the first steepness limit, so face and shadow are one
    region, too large to be a shadow; the stricter second pass separates them: the shadow
    becomes translucent black, the face stays opaque."""
    art, face = face_over_shadow((120, 60, 360, 300))
    truth = np.asarray(art.getchannel("A")).astype(float)
    image = composite(art, (255, 255, 255))
    with monkeypatch.context() as patched:
        patched.setattr(shadows, "_SHADOW_PASSES", (1.0,))
        _, one_pass = cut(image)
    _, result = cut(image)
    shadow_only = (face == 0) & (truth > 40)
    assert shadow_only.sum() > 5000
    assert (one_pass.alpha[shadow_only] == 255).mean() > 0.9  # what the second pass is for
    assert (result.alpha[shadow_only] < 250).mean() > 0.95
    assert np.abs(result.alpha[shadow_only] - truth[shadow_only]).mean() < 10
    assert (result.alpha[face == 255] == 255).all()
    assert np.abs(result.alpha - truth).mean() / 255 < 0.01


def test_split_pass_leaves_a_face_edge_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a smaller face the shadow is too large on its own; the stricter pass then finds only
    thin slivers of the face's soft edge, reached from the background, and keeps none."""
    art, face = face_over_shadow((200, 100, 330, 280), 205, spot=(270, 235, 500, 325), blur=15)
    image = composite(art, (255, 255, 255))
    with monkeypatch.context() as patched:
        patched.setattr(shadows, "_SHADOW_PASSES", (1.0,))
        _, one_pass = cut(image)
    _, result = cut(image)
    edge = (face > 0) & (face < 255)
    assert edge.sum() > 1000
    assert np.array_equal(result.alpha[edge], one_pass.alpha[edge])


def test_gradient_background() -> None:
    width, height = 600, 400
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    start = np.array([250, 200, 120], dtype=np.float32)
    end = np.array([120, 160, 240], dtype=np.float32)
    shade = start + (end - start) * (0.7 * x + 0.3 * y)
    background = Image.fromarray(shade.astype(np.uint8), mode="RGB")
    logo = draw_logo((width, height))
    analysis, result = cut(composite(logo, background))
    assert analysis.is_plain and analysis.is_gradient
    assert iou(result.alpha, np.asarray(logo.getchannel("A"))) >= 0.97


def test_artwork_touching_the_border_is_still_plain() -> None:
    art = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    ImageDraw.Draw(art).rectangle([0, 100, 30, 160], fill=(10, 10, 10, 255))  # on the edge
    ImageDraw.Draw(art).ellipse([100, 50, 300, 250], fill=(200, 0, 0, 255))
    analysis, result = cut(composite(art, (255, 255, 255)))
    assert analysis.is_plain
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_are_not_plain(name: str) -> None:
    pixels = np.asarray(Image.open(SKIMAGE_DATA / name).convert("RGB"))
    assert not border.analyse_border(pixels).is_plain


def test_tiny_images() -> None:
    for size in [(1, 1), (2, 3), (5, 1)]:
        pixels = np.full((size[1], size[0], 3), 255, dtype=np.uint8)
        analysis = border.analyse_border(pixels)
        result = graphics.colour_key(pixels, analysis)
        assert result.alpha.shape == (size[1], size[0])


# --- enclosed regions: kept, or opened as holes on the model's word ------------------------------


BLUE = (20, 40, 160, 255)


def ring_icon(size: int = 400, *, supersample: int = 4) -> Image.Image:
    """An orange ring (a donut) whose hole shows the background: the hole is about 4 % of the
    image, far above the size under which enclosed regions are kept without asking."""
    s = supersample
    big = Image.new("RGBA", (size * s, size * s), (0, 0, 0, 0))
    centre, outer, inner = size * s / 2, size * s * 0.32, size * s * 0.32 * 0.45
    draw = ImageDraw.Draw(big)
    draw.ellipse([centre - outer] * 2 + [centre + outer] * 2, fill=(230, 120, 20, 255))
    draw.ellipse([centre - inner] * 2 + [centre + inner] * 2, fill=(0, 0, 0, 0))
    return big.resize((size, size), Image.Resampling.LANCZOS)


class ModelVote:
    """The engine's hole vote: the real model's matte at its own size, counting the calls."""

    def __init__(self, engine: RemovalEngine, image: Image.Image) -> None:
        self.engine, self.image, self.calls = engine, image.convert("RGB"), 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.engine.session().predict(np.asarray(self.image))


def test_ring_hole_is_cut_out_with_the_model(engine: RemovalEngine) -> None:
    art = ring_icon()
    image = composite(art, (255, 255, 255))
    pixels = np.asarray(image)
    analysis = border.analyse_border(pixels)
    without = graphics.colour_key(pixels, analysis)
    assert without.alpha[200, 200] == 255  # the rule alone keeps enclosed background
    vote = ModelVote(engine, image)
    result = graphics.colour_key(pixels, analysis, hole_vote=vote)
    assert vote.calls == 1
    assert result.holes == 1
    assert result.alpha[180:220, 180:220].max() == 0
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99
    # The hole's rim is an edge like the outline: partial alpha, not a hard step.
    rim = (result.alpha > 0) & (result.alpha < 255)
    assert rim[150:250, 150:250].sum() > 50


def test_white_inside_a_badge_stays_with_the_model(engine: RemovalEngine) -> None:
    """White artwork enclosed by a badge is asked about when large (a white disc) and kept:
    the model sees the whole badge as foreground. The logo's white letters are kept without
    asking (their anti-aliased rims keep them from matching the background closely)."""
    size = 4
    big = Image.new("RGBA", (400 * size, 400 * size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.rounded_rectangle([60 * size, 60 * size, 340 * size, 340 * size], 40 * size, fill=BLUE)
    draw.ellipse([130 * size, 130 * size, 270 * size, 270 * size], fill=(255, 255, 255, 255))
    badge = big.resize((400, 400), Image.Resampling.LANCZOS)
    for art, asked in [(badge, 1), (draw_logo(), 0)]:
        image = composite(art, (255, 255, 255))
        pixels = np.asarray(image)
        vote = ModelVote(engine, image)
        result = graphics.colour_key(pixels, border.analyse_border(pixels), hole_vote=vote)
        assert vote.calls == asked
        assert result.holes == 0
        white = np.asarray(art)[..., :3].min(axis=2) > 240
        white &= np.asarray(art.getchannel("A")) == 255
        assert white.sum() > 200
        assert (result.alpha[white] == 255).mean() > 0.99


def text_art(text: str, font_px: int, size: tuple[int, int] = (800, 240)) -> Image.Image:
    s = 4
    big = Image.new("RGBA", (size[0] * s, size[1] * s), (0, 0, 0, 0))
    font = ImageFont.load_default(size=font_px * s)
    ImageDraw.Draw(big).text((30 * s, 20 * s), text, fill=(0, 0, 0, 255), font=font)
    return big.resize(size, Image.Resampling.LANCZOS)


def test_small_letter_counters_stay_without_asking() -> None:
    """Small black text on white: the counters of a, e, o, B are enclosed background under
    0.05 % of the image each, so they stay (opaque white) and nobody is asked, even a vote that
    would call everything background."""
    art = text_art("BOB ade BOB ade", 20)
    pixels = np.asarray(composite(art, (255, 255, 255)))
    calls: list[int] = []

    def everything_is_background() -> np.ndarray:
        calls.append(1)
        return np.zeros(pixels.shape[:2], dtype=np.uint8)

    analysis = border.analyse_border(pixels)
    result = graphics.colour_key(pixels, analysis, hole_vote=everything_is_background)
    assert calls == [] and result.holes == 0
    counters = (np.asarray(art.getchannel("A")) == 0) & (result.alpha == 255)
    assert counters.sum() > 100  # kept opaque: a white fill inside each counter


def test_large_letter_counters_follow_the_model(engine: RemovalEngine) -> None:
    """Larger text: the counters are big enough to ask about, and u2netp calls them
    background, so they become holes like the letters' true shapes."""
    art = text_art("BOB ade", 90)
    image = composite(art, (255, 255, 255))
    pixels = np.asarray(image)
    vote = ModelVote(engine, image)
    result = graphics.colour_key(pixels, border.analyse_border(pixels), hole_vote=vote)
    assert vote.calls == 1
    assert result.holes == 8  # B, O, B: 2 + 1 + 2; a, d, e: 1 each
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99


def test_no_enclosed_regions_no_model() -> None:
    art = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(art).ellipse([50, 40, 250, 160], fill=(200, 30, 30, 255))
    pixels = np.asarray(composite(art, (255, 255, 255)))

    def must_not_be_called() -> np.ndarray:
        raise AssertionError("the model was asked about an image without enclosed regions")

    result = graphics.colour_key(
        pixels, border.analyse_border(pixels), hole_vote=must_not_be_called
    )
    assert iou(result.alpha, np.asarray(art.getchannel("A"))) >= 0.99


def test_no_opinion_keeps_enclosed_regions() -> None:
    """A vote that returns None (no model installed) keeps every region, as without a vote."""
    pixels = np.asarray(composite(ring_icon(), (255, 255, 255)))
    analysis = border.analyse_border(pixels)
    result = graphics.colour_key(pixels, analysis, hole_vote=lambda: None)
    assert result.holes == 0
    assert np.array_equal(result.alpha, graphics.colour_key(pixels, analysis).alpha)


def test_engine_cuts_ring_holes(engine: RemovalEngine) -> None:
    art = ring_icon()
    result = engine.remove(encode(composite(art, (255, 255, 255))))
    assert result.kind is ImageKind.GRAPHIC and result.method == "model+colour-key:u2netp"
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).getchannel("A"))
    assert iou(alpha, np.asarray(art.getchannel("A"))) >= 0.99


def _only_u2netp(tmp_path: Path) -> Path:
    installed = EngineSettings().models_dir / models.MODELS["u2netp"].filename
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / installed.name).symlink_to(installed)
    return folder


def test_hole_judge_falls_back_to_the_request_model_without_a_quality_model(
    engine: RemovalEngine, tmp_path: Path
) -> None:
    settings = engine.settings.model_copy(
        update={"hole_judge_model": "quality", "models_dir": _only_u2netp(tmp_path)}
    )
    judged = RemovalEngine(settings=settings)
    try:
        result = judged.remove(encode(composite(ring_icon(), (255, 255, 255))))
        assert result.method == "model+colour-key:u2netp"
    finally:
        judged.close()


@pytest.mark.skipif(
    models.model_state(EngineSettings().models_dir, models.MODELS["isnet"], verify=False)
    is not models.ModelState.INSTALLED,
    reason="isnet is not installed (stolentee models install isnet)",
)
def test_the_quality_model_judges_holes_when_configured(engine: RemovalEngine) -> None:
    art = ring_icon()
    settings = engine.settings.model_copy(update={"hole_judge_model": "quality"})
    judged = RemovalEngine(settings=settings)
    try:
        result = judged.remove(encode(composite(art, (255, 255, 255))))
        quality = models.resolve(settings.models_dir, "quality")
        assert result.method == f"model+colour-key:{quality}" and result.model == quality
        alpha = np.asarray(Image.open(io.BytesIO(result.data)).getchannel("A"))
        assert iou(alpha, np.asarray(art.getchannel("A"))) >= 0.99
    finally:
        judged.close()


def test_an_unknown_hole_judge_is_refused_at_start_up(engine: RemovalEngine) -> None:
    settings = engine.settings.model_copy(update={"hole_judge_model": "u3net"})
    with pytest.raises(ConfigurationError, match="unknown model 'u3net'"):
        RemovalEngine(settings=settings)


# --- implausible keys -----------------------------------------------------------------------------


def radial_background(width: int, height: int) -> Image.Image:
    """A radial gradient centred in the frame: bright inside, dark at the border."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((x - width * 0.55) / width, (y - height * 0.45) / height)[..., None]
    inner = np.array([150, 106, 199], dtype=np.float32)
    outer = np.array([122, 146, 27], dtype=np.float32)
    shade = inner + (outer - inner) * np.clip(r / 0.7, 0, 1)
    return Image.fromarray((shade + 0.5).astype(np.uint8), mode="RGB")


def test_radial_gradient_key_is_implausible() -> None:
    """A border fit cannot see a radial gradient's centre; the key keeps it as artwork, and
    says so: most of that cut's edge has no contrast."""
    art = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    ImageDraw.Draw(art).ellipse([30, 120, 150, 240], fill=(230, 120, 20, 255))
    analysis, result = cut(composite(art, radial_background(600, 400)))
    assert analysis.is_plain and analysis.is_gradient
    assert not result.plausible and result.flat_edges > 0.3


def test_solid_and_linear_keys_are_plausible() -> None:
    _, on_white = cut(composite(draw_logo(), (255, 255, 255)))
    assert on_white.plausible and on_white.flat_edges < 0.02
    x = np.linspace(0, 1, 600, dtype=np.float32)[None, :, None]
    shade = np.array([250, 200, 120], np.float32) + np.array([-130, -40, 120], np.float32) * x
    linear = Image.fromarray(np.repeat(shade, 400, axis=0).astype(np.uint8), mode="RGB")
    _, on_linear = cut(composite(draw_logo(), linear))
    assert on_linear.plausible


def test_engine_uses_the_model_for_implausible_keys(engine: RemovalEngine) -> None:
    art = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    ImageDraw.Draw(art).ellipse([30, 120, 150, 240], fill=(230, 120, 20, 255))
    result = engine.remove(encode(composite(art, radial_background(600, 400))))
    assert result.method == "model:u2netp"


def test_large_image_band_tiles() -> None:
    """The edge statistics are computed on tiles around the band; artwork touching the frame
    (tiles reaching outside the image) and a long edge give the same cut as at a small size."""
    art = Image.new("RGBA", (2400, 1600), (0, 0, 0, 0))
    draw = ImageDraw.Draw(art)
    draw.rectangle([0, 0, 300, 200], fill=(20, 40, 160, 255))  # in the corner
    draw.ellipse([500, 300, 2300, 1500], fill=(200, 30, 30, 255))
    truth = np.asarray(art.getchannel("A"))
    analysis, result = cut(composite(art, (255, 255, 255)))
    assert analysis.is_plain
    assert iou(result.alpha, truth) >= 0.995
    assert result.alpha[:150, :250].min() == 255 and result.alpha[-50:, -50:].max() == 0


def test_engine_without_a_model_keeps_the_key(
    engine_settings: EngineSettings, tmp_path: Path
) -> None:
    """No model installed: enclosed regions stay and an implausible key is still used, rather
    than failing a graphic that the colour key can cut."""
    bare = RemovalEngine(settings=engine_settings.model_copy(update={"models_dir": tmp_path}))
    ring = bare.remove(encode(composite(ring_icon(), (255, 255, 255))))
    assert ring.method == "colour-key"
    alpha = np.asarray(Image.open(io.BytesIO(ring.data)).getchannel("A"))
    assert alpha[200, 200] == 255
    art = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    ImageDraw.Draw(art).ellipse([30, 120, 150, 240], fill=(230, 120, 20, 255))
    radial = bare.remove(encode(composite(art, radial_background(600, 400))))
    assert radial.method == "colour-key"


def starfield(size: tuple[int, int] = (1600, 1200), count: int = 4000) -> Image.Image:
    """Many small bright dots on black: the band around them covers most of the frame."""
    rng = np.random.default_rng(5)
    art = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(art)
    for x, y, r in zip(
        rng.integers(20, size[0] - 20, count),
        rng.integers(20, size[1] - 20, count),
        rng.integers(2, 6, count),
        strict=True,
    ):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(250, 240, 200, 255))
    return composite(art, (0, 0, 0))


@pytest.mark.parametrize("image", ["starfield", "large-band"])
def test_band_chunks_give_the_whole_stack_result(
    monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    """The band's tiles are processed a bounded number at a time (memory); any chunk size,
    down to one tile per chunk, gives exactly the same cut."""
    if image == "starfield":
        picture = starfield()
    else:
        art = Image.new("RGBA", (2400, 1600), (0, 0, 0, 0))
        ImageDraw.Draw(art).ellipse([500, 300, 2300, 1500], fill=(200, 30, 30, 255))
        picture = composite(art, (255, 255, 255))
    monkeypatch.setattr(graphics, "_CHUNK_STACK_PX", 1 << 40)  # one chunk: the whole stack
    _, whole = cut(picture)
    for stack_px in (1, 5000, 1 << 19):
        monkeypatch.setattr(graphics, "_CHUNK_STACK_PX", stack_px)
        _, chunked = cut(picture)
        assert np.array_equal(chunked.alpha, whole.alpha)
        assert np.array_equal(chunked.rgb, whole.rgb)
        assert chunked.flat_edges == whole.flat_edges


def test_tile_chunks_cover_every_band_pixel_once() -> None:
    rng = np.random.default_rng(3)
    ys = rng.integers(0, 900, 5000).astype(np.intp)
    xs = rng.integers(0, 700, 5000).astype(np.intp)
    tiles = graphics._Tiles.around(ys, xs, tile=32, margin=11)
    seen = np.zeros(len(ys), dtype=int)
    for part, picked in tiles.chunks(7):
        assert len(part.origins) <= 7
        seen[picked] += 1
        # Each band pixel keeps its place relative to its own tile's origin.
        tile_of = part.rows // part.side
        assert np.array_equal(part.origins[tile_of, 0] + part.rows % part.side, ys[picked])
        assert np.array_equal(part.origins[tile_of, 1] + part.cols, xs[picked])
    assert (seen == 1).all()


def test_hole_vote_runs_without_the_decoded_image(engine: RemovalEngine) -> None:
    """While the model votes on holes, the engine no longer holds the decoded Pillow image (the
    colour key has its own numpy copy), nor does the key hold the near-background mask."""
    import weakref

    taken = [engine.decode(encode(composite(ring_icon(), (255, 255, 255))))]
    alive = weakref.ref(taken[0].image)
    session = engine.session()
    seen: list[bool] = []
    original = session.predict

    def spy(rgb: Image.Image) -> Image.Image:
        seen.append(alive() is not None)
        return original(rgb)

    session.predict = spy  # type: ignore[method-assign]
    try:
        matte = engine._matte(taken, ImageKind.AUTO, None)
    finally:
        del session.predict
    assert matte.method == "model+colour-key:u2netp"
    assert seen == [False]


@pytest.mark.parametrize("edge_only", [False, True])
def test_surface_fit_matches_least_squares(edge_only: bool) -> None:
    """The normal-equation fit gives lstsq's (minimum-norm) solution, also when the samples
    leave the surface underdetermined (all on the top edge: y and y*y are zero)."""
    rng = np.random.default_rng(7)
    xs = rng.random(500).astype(np.float32)
    ys = np.zeros(500, np.float32) if edge_only else rng.random(500).astype(np.float32)
    design = border._design(xs, ys)
    truth = rng.normal(0, 30, (3, 6)).astype(np.float32)
    colours = (design @ truth.T + rng.normal(0, 2, (500, 3))).astype(np.float32)
    expected, *_ = np.linalg.lstsq(design.astype(np.float64), colours, rcond=None)
    fitted = border._fit_surface(design, colours)
    assert fitted.shape == (3, 6) and fitted.dtype == np.float32
    np.testing.assert_allclose(fitted, expected.T, rtol=1e-3, atol=1e-3)
