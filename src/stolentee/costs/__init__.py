"""Cost model: the price book, usage profiles, the seed's two scenarios, live savings.

``stolentee costs report`` prices usage profiles side by side; ``stolentee costs scale`` shows
how the cost grows with users. :mod:`stolentee.costs.live` turns the removal statistics into
the savings the running system achieves (``/health/detailed``, ``GET /v1/costs/report``).
"""
