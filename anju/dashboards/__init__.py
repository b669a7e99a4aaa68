"""Grafana dashboards as code, their provisioning, and pushing them to a Grafana.

Modules, one job each (imported on use, so ``anju --help`` does not load the SDK):

- :mod:`~anju.dashboards.influxql` — raw InfluxQL query type for grafana-foundation-sdk;
- :mod:`~anju.dashboards.panels` — shared panel and variable builders;
- :mod:`~anju.dashboards.kinds` / :mod:`~anju.dashboards.tuning` — one dashboard per kind
  of the kind table, with optional hand-tuned limits and extras;
- :mod:`~anju.dashboards.overview`, :mod:`~anju.dashboards.alarms`,
  :mod:`~anju.dashboards.pipeline` — city, estate, alarms, pipeline health;
- :mod:`~anju.dashboards.provisioning` / :mod:`~anju.dashboards.build` — the tree that
  ``anju dashboards build`` writes;
- :mod:`~anju.dashboards.push` — ``anju dashboards push`` (grafana-client);
- :mod:`~anju.dashboards.macros` / :mod:`~anju.dashboards.check` — Grafana's macro
  substitution, and running every query against an InfluxDB.
"""

__all__: list[str] = []
