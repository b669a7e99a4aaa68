"""The accountability report (issue 19): how each property company answered its alarms.

Computed from the alarm store (alarms and their event histories, SQLite in the state dir),
never from a scan of the readings; every figure is shown as evidence for the bureau's own
credit rating, never as its verdict. Modules, one job each:

- :mod:`.period`   — the reporting period and its time zone
- :mod:`.scope`    — whose estates: a team's token, a jurisdiction, or the whole site
- :mod:`.load`     — the alarm store read into numpy columns, as of the period's end
- :mod:`.figures`  — every figure, as flat tables (the CSV files and the JSON)
- :mod:`.scoring`  — weights from ``site.yaml``, scores and the suggested credit level
- :mod:`.svg`, :mod:`.html` — the self-contained HTML report (inline SVG, no assets)
- :mod:`.output`   — writing HTML, CSV and JSON into a directory
- :mod:`.api`      — ``GET /reports`` on the pipeline's API
- :mod:`.bench` — ``anju bench report``; the command ``anju report`` is
  :mod:`anju.commands.report`
"""
