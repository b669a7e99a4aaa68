"""Device kinds, the site registry, strict decoding, dead letters and broker credentials.

- :mod:`anju.kinds` — the kind table ``KINDS`` (one module per kind, a ``KindSpec``)
- :mod:`anju.devices.registry` — ``load_site(dir)`` → ``Site`` with its ``DeviceTable``;
  what a ``Site`` holds is in :mod:`anju.devices.site`, each file's reader in
  :mod:`anju.devices.site_yaml` (with :mod:`anju.devices.yaml_lines`),
  :mod:`anju.devices.devices_csv` and :mod:`anju.devices.gateways_csv`
- :mod:`anju.devices.decode` — ``Decoder``: MQTT messages → ``BatchBuilder`` / ``Rejection``
- :mod:`anju.devices.batch` — ``Batch`` / ``KindBatch``: readings as numpy columns
- :mod:`anju.devices.schema` — strict pydantic models, the decoder's reference; JSON Schema
- :mod:`anju.devices.deadletter` — ``DeadLetters``: the rotated JSON-lines dead-letter file
- :mod:`anju.devices.credentials` — Mosquitto passwd / ACL / credentials.csv from a site
- :mod:`anju.devices.sample` — generated site directories (tests, benchmarks)

Nothing is imported here, so that ``anju --help`` stays instant.
"""
