"""A raw InfluxQL query type for grafana-foundation-sdk, and InfluxQL quoting helpers.

The SDK ships typed queries for Prometheus, Loki, Elasticsearch … but none for InfluxDB,
so this module adds one in the SDK's own shape (a ``Dataquery`` model with ``to_json``
/ ``from_json`` and a ``Builder``), registered with the SDK's runtime so that a dashboard
read back with ``Dashboard.from_json`` yields these objects again.

CONTRACT §7: every InfluxDB target is raw InfluxQL (``rawQuery: true``) using Grafana's
``$timeFilter`` and ``$__interval`` and the dashboards' template variables.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dash

__all__ = [
    "INFLUXDB",
    "PROMETHEUS",
    "InfluxQL",
    "InfluxQLAnnotationTarget",
    "InfluxQLQuery",
    "ResultFormat",
    "ident",
    "influx_ref",
    "literal",
    "prometheus_ref",
    "scope",
]

INFLUXDB = "influxdb"  # Grafana's plugin id of the InfluxDB datasource
PROMETHEUS = "prometheus"
INFLUX_UID = "anju-influxdb"  # stable datasource uids: provisioning and dashboards agree
PROMETHEUS_UID = "anju-prometheus"

ResultFormat = Literal["time_series", "table", "logs"]


def influx_ref() -> dash.DataSourceRef:
    """The reference every InfluxDB panel, variable and annotation points at."""
    return dash.DataSourceRef(type_val=INFLUXDB, uid=INFLUX_UID)


def prometheus_ref() -> dash.DataSourceRef:
    """The reference of the Prometheus datasource that scrapes the pipeline's /metrics."""
    return dash.DataSourceRef(type_val=PROMETHEUS, uid=PROMETHEUS_UID)


def ident(name: str) -> str:
    """An InfluxQL double-quoted identifier (measurement, tag or field key)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scope(*variables: str) -> str:
    """``"estate" =~ /^$estate$/ AND … AND $timeFilter`` for the given template variables.

    Regex matches, because Grafana interpolates a multi-value or "All" variable used in
    a regex as ``(a|b)`` or the variable's custom all value (``.*`` here), and a single
    value as itself, regex-escaped.
    """
    parts = [f"{ident(v)} =~ /^${v}$/" for v in variables]
    parts.append("$timeFilter")
    return " AND ".join(parts)


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel, as Grafana's InfluxDB datasource stores it."""

    ref_id: str
    query: str
    result_format: ResultFormat
    alias: str | None
    hide: bool | None
    datasource: dash.DataSourceRef | None

    def __init__(
        self,
        query: str = "",
        ref_id: str = "",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        hide: bool | None = None,
        datasource: dash.DataSourceRef | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            query=data.get("query", ""),
            ref_id=data.get("refId", ""),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            hide=data.get("hide"),
            datasource=dash.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
        )


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of an :class:`InfluxQLQuery`, in the SDK's fluent style."""

    _internal: InfluxQLQuery

    def __init__(self, query: str = "") -> None:
        self._internal = InfluxQLQuery(query=query, datasource=influx_ref())

    def build(self) -> InfluxQLQuery:
        return self._internal

    def query(self, query: str) -> Self:
        self._internal.query = query
        return self

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def result_format(self, result_format: ResultFormat) -> Self:
        self._internal.result_format = result_format
        return self

    def table(self) -> Self:
        return self.result_format("table")

    def alias(self, alias: str) -> Self:
        """Series name pattern: ``$tag_<key>``, ``$col``, ``$m`` (Grafana's InfluxDB aliases)."""
        self._internal.alias = alias
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self


class InfluxQLAnnotationTarget(dash.AnnotationTarget):
    """The target of an InfluxDB annotation: a raw InfluxQL query and the columns to use.

    The SDK's ``AnnotationTarget`` only knows the built-in Grafana annotation store; this is
    the shape Grafana's InfluxDB datasource reads (``fromAnnotations``, ``textColumn`` …).
    """

    def __init__(
        self, query: str = "", text_column: str = "", tags_column: str = "",
        title_column: str = "",
    ) -> None:
        super().__init__()
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "fromAnnotations": True,
            "resultFormat": "table",
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "titleColumn": self.title_column,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            query=data.get("query", ""),
            text_column=data.get("textColumn", ""),
            tags_column=data.get("tagsColumn", ""),
            title_column=data.get("titleColumn", ""),
        )


class InfluxQLAnnotation(cogbuilder.Builder[dash.AnnotationTarget]):
    """Builder of an :class:`InfluxQLAnnotationTarget`."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLAnnotationTarget(query=query)

    def build(self) -> dash.AnnotationTarget:
        return self._internal

    def text_column(self, column: str) -> Self:
        self._internal.text_column = column
        return self

    def tags_column(self, columns: str) -> Self:
        """Comma-separated columns whose values become the annotation's tags."""
        self._internal.tags_column = columns
        return self

    def title_column(self, column: str) -> Self:
        self._internal.title_column = column
        return self


# Teach the SDK's runtime our query type, so Dashboard.from_json round-trips it.
cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier=INFLUXDB, from_json_hook=InfluxQLQuery.from_json)
)
