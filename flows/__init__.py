"""Prefect flows: thin wiring over ``augment`` and ``evaluation``.

Importing this package sets quiet, offline-friendly Prefect defaults (only where the user has not
set them): they must be in the environment before Prefect itself is imported.
"""

import os

_PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # batch size 1 left a backlog that stalled the next flow run (shared/docs/prefect.md)
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_UI_ENABLED": "false",
}
for _key, _value in _PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
