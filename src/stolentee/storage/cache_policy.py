"""CDN cache headers per public prefix (seed report section 2.4, exactly).

User uploads may be replaced, so they are cached for a day and may be served stale for a week
while the CDN revalidates. Assets (cutouts, product images) are content-addressed and never
change, so they are cached for a week and marked immutable. The S3 backend sets the same
``Cache-Control`` on upload; the file routes send both headers.
"""

from __future__ import annotations

from dataclasses import dataclass

UPLOADS_PREFIX = "uploads/"
ASSETS_PREFIX = "assets/"
PUBLIC_PREFIXES = (UPLOADS_PREFIX, ASSETS_PREFIX)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    cache_control: str
    cdn_cache_control: str


UPLOADS_CACHE = CachePolicy(
    cache_control="public, max-age=86400, stale-while-revalidate=604800",
    cdn_cache_control="public, max-age=86400",
)
ASSETS_CACHE = CachePolicy(
    cache_control="public, max-age=604800, immutable",
    cdn_cache_control="public, max-age=604800",
)


def cache_policy_for(key: str) -> CachePolicy | None:
    """The policy of a public key, ``None`` for keys that are not served publicly."""
    if key.startswith(UPLOADS_PREFIX):
        return UPLOADS_CACHE
    if key.startswith(ASSETS_PREFIX):
        return ASSETS_CACHE
    return None
