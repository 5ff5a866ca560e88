"""``stolentee backup schedule``: the nightly backup as a cron line, a Kubernetes CronJob or a
Railway cron service, for a target and a retention.

The scheduled command backs up, then prunes: ``stolentee backup create --to T && stolentee
backup prune --from T --keep-daily N --keep-weekly M``. Runs never overlap (``Forbid`` on
Kubernetes; a cron service on Railway starts a run only when the last one ended).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from stolentee.backup.targets import parse_target
from stolentee.errors import ConfigurationError
from stolentee.scaling.manifests import to_yaml

DEFAULT_AT = "17 3 * * *"  # 03:17 UTC: off the hour, when shops are quiet
_CRON_FIELD = re.compile(r"^[0-9*/,\-]+$")


def check_cron(at: str) -> str:
    fields = at.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(field) for field in fields):
        raise ConfigurationError(
            f"schedule {at!r} is not a cron expression of five fields (minute hour day month "
            "weekday), e.g. '17 3 * * *'"
        )
    return " ".join(fields)


def backup_command(target: str, *, keep_daily: int, keep_weekly: int) -> str:
    parse_target(target)  # a bad spec fails here, not at 3 a.m.
    quoted = shlex.quote(target)
    return (
        f"stolentee backup create --to {quoted} && stolentee backup prune --from {quoted} "
        f"--keep-daily {keep_daily} --keep-weekly {keep_weekly}"
    )


def cron_line(at: str, command: str) -> str:
    return (
        "# stolentee nightly backup (run as the service's user, with its environment)\n"
        f"{check_cron(at)}  {command}\n"
    )


def kubernetes_cronjob(
    at: str, command: str, *, image: str, env_secret: str, namespace: str
) -> str:
    document: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "stolentee-backup",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "stolentee"},
        },
        "spec": {
            "schedule": check_cron(at),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [
                                {
                                    "name": "backup",
                                    "image": image,
                                    "command": ["sh", "-c", command],
                                    "envFrom": [{"secretRef": {"name": env_secret}}],
                                }
                            ],
                        }
                    },
                }
            },
        },
    }
    head = (
        "# Written by `stolentee backup schedule --format kubernetes`: the nightly backup.\n"
        f"# The container gets the service's settings from the Secret {env_secret!r}.\n"
    )
    return head + to_yaml(document)


def railway_service(at: str, command: str) -> str:
    """A ``railway.toml`` for a cron service built from the same Dockerfile."""
    return (
        "# A Railway cron service for the nightly backup: same repository and variables as the\n"
        "# API service; Railway starts it on the schedule and it exits when done.\n"
        "[build]\n"
        'builder = "DOCKERFILE"\n'
        'dockerfilePath = "Dockerfile"\n'
        "\n"
        "[deploy]\n"
        f"startCommand = {_toml_string(f'sh -c {shlex.quote(command)}')}\n"
        f'cronSchedule = "{check_cron(at)}"\n'
        'restartPolicyType = "NEVER"\n'
    )


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
