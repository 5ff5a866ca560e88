"""Health notifications for shops without Prometheus: one replica (the holder of a database
lease) checks every component, and announces each change between pass / warn / fail, debounced
and flap-limited, to ``STOLENTEE_ALERT_WEBHOOK_URL`` (Slack-compatible JSON), retried from an
outbox table so that a notice is neither lost nor sent twice.

- :mod:`~stolentee.alerts.components`: each component's status now;
- :mod:`~stolentee.alerts.lease`: the lease that picks the watching replica;
- :mod:`~stolentee.alerts.changes`: observed and announced statuses, and the notices they make;
- :mod:`~stolentee.alerts.notices`: the webhook, its URL policy and the notice's JSON;
- :mod:`~stolentee.alerts.watch`: the background thread tying them together.
"""
