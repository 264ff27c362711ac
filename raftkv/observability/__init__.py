"""What a node tells its operator about itself.

:mod:`.hclog` writes its log lines in hashicorp go-hclog's text and JSON forms
(structlog processors), :mod:`.eventlog` keeps the recent ones in a ring for
the dashboard, :mod:`.metrics` is its Prometheus registry (``GET /metrics``)
and :mod:`.procstat` reads a process's CPU time and resident memory from
/proc.
"""
