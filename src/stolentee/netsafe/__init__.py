"""Outbound HTTP to addresses a user named, without letting them reach inside the network.

Image URLs (Remove.bg's ``image_url``, rembg's ``?url=``) go through :func:`fetch_image_url`
(:mod:`.fetch`); design callbacks through :func:`vet_url` and :func:`send_pinned`
(:mod:`.pinned`). Both apply a :class:`UrlPolicy` (:mod:`.urls`: what a URL may look like and
which hosts it may name) and refuse internal addresses (:mod:`.addresses`), on every hop, with
one deadline for the whole exchange (:mod:`.clock`).
"""

from stolentee.errors import (
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageUrlDisabledError,
    ImageUrlError,
    TooManyRedirectsError,
)
from stolentee.netsafe.addresses import forbidden_address_reason, internal_address_reason
from stolentee.netsafe.fetch import FetchedImage, fetch_image_url
from stolentee.netsafe.pinned import Answer, VettedUrl, send_pinned, vet_url
from stolentee.netsafe.urls import Resolver, UrlPolicy, system_resolver

__all__ = [
    "Answer",
    "FetchedImage",
    "ImageDownloadError",
    "ImageDownloadTimeoutError",
    "ImageUrlDisabledError",
    "ImageUrlError",
    "Resolver",
    "TooManyRedirectsError",
    "UrlPolicy",
    "VettedUrl",
    "fetch_image_url",
    "forbidden_address_reason",
    "internal_address_reason",
    "send_pinned",
    "system_resolver",
    "vet_url",
]
