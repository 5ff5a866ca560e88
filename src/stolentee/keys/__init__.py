"""API keys for the public removal API: key store, per-caller usage and the rate limiter.

``store.KeyStore`` authenticates ``X-Api-Key`` values (keys from ``STOLENTEE_API_KEYS`` and keys
created with ``stolentee keys create``) and counts usage per caller and UTC day;
``ratelimit.MegapixelRateLimiter`` enforces the per-caller megapixels-per-minute limit;
``cli.keys_app`` is the ``stolentee keys`` command group. Nothing here imports FastAPI.
"""
