"""The CDN in front of the assets: making it forget URLs whose objects are gone or moved.

- :mod:`~stolentee.cdn.purge`: the purge backends (Varnish's PURGE, Cloudflare's
  purge-by-URL API, none) behind one :class:`~stolentee.cdn.purge.Purger`, and the settings'
  checks (a bad backend configuration stops the start-up);
- :mod:`~stolentee.cdn.jobs`: purges as queue jobs (retried with backoff, never blocking the
  request that made them), and the URLs a deleted design leaves behind.
"""
