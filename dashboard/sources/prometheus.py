"""A PromQL instant query against a Prometheus server's HTTP API (GET /api/v1/query).

A scalar, or a vector of one series, is a number: Prometheus sends every sample
value as a string ("0.25"), read as the views read numbers in text; "NaN" and
"+Inf" are refused with the reason. A vector of several series is rows for a
`list` widget, one per series, labelled by the label the config names (else by
the whole series, `up{job="node"}`), in the order Prometheus gives them, which
the query chooses with sort_desc() or topk().

Messages name the endpoint without the query string: the query is in the config,
and a URL may carry a secret.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import HTTPRequest

from ..core.views import number_from_text
from . import SourceError
from .http_json import REQUEST_SHARE, HttpClient, fetch_answer, read_headers, read_url, shown_url


class PrometheusQuery:
    def __init__(self, url: str, query: str, label: str | None, headers: dict[str, str], timeout: float, rows: bool):
        self.endpoint = url.rstrip("/") + "/api/v1/query"
        self.query = query
        self.label = label
        self.headers = {"Accept": "application/json", **headers}
        self.timeout = timeout
        self.rows = rows  # a list widget: a row per series; else one number
        self.client = HttpClient()

    async def fetch(self) -> Any:
        data = await self._query()
        kind = data.get("resultType")
        result: Any = data.get("result")
        if kind == "scalar" and not self.rows:
            return self._number(result[1], "the scalar")
        if kind != "vector":
            wanted = "an instant vector" if self.rows else "an instant vector or a scalar"
            raise SourceError(f"the query gives a {kind}, not {wanted}")
        if self.rows:
            return [
                {"label": self._name(series), "value": self._number(series["value"][1], series)} for series in result
            ]
        if len(result) != 1:
            if not result:
                raise SourceError("the query matches no series")
            raise SourceError(
                f'the query gives {len(result)} series: narrow it (sum(...), a label matcher) or show them as view = "list"'
            )
        return self._number(result[0]["value"][1], result[0])

    async def _query(self) -> dict:
        # Prometheus stops evaluating at its own timeout: this one, so it does not work on
        # for an answer nobody waits for.
        arguments = urlencode({"query": self.query, "timeout": f"{self.timeout:g}s"})
        request = HTTPRequest(
            f"{self.endpoint}?{arguments}",
            headers=self.headers,
            connect_timeout=self.timeout * REQUEST_SHARE,
            request_timeout=self.timeout * REQUEST_SHARE,
        )
        response, body = await fetch_answer(self.client, request, self.endpoint, self.timeout)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict):
            raise SourceError(f"HTTP {response.code} from {shown_url(self.endpoint)}, not Prometheus's JSON")
        if document.get("status") != "success":
            # A query Prometheus refuses (400, 422, 503) still comes with its reason.
            reason = f"{document.get('errorType', 'error')}: {document.get('error', 'no reason given')}"
            raise SourceError(f"Prometheus at {shown_url(self.endpoint)} says {reason}")
        data = document.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"no data in the answer from {shown_url(self.endpoint)}")
        return data

    def _name(self, series: dict) -> str:
        labels = series.get("metric", {})
        if self.label is not None and self.label in labels:
            return labels[self.label]
        return _series_text(labels)

    @staticmethod
    def _number(text: Any, series: dict | str) -> int | float:
        number = number_from_text(text) if isinstance(text, str) else None
        if number is None:
            where = series if isinstance(series, str) else _series_text(series.get("metric", {}))
            raise SourceError(f"{where} is {text}, not a number a widget can show")
        return number

    async def close(self) -> None:
        await self.client.close()


def _series_text(labels: dict) -> str:
    """A series as PromQL writes it: up{instance="host:9100",job="node"}."""
    name = labels.get("__name__", "")
    rest = ",".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()) if key != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def build(options, widget, config) -> PrometheusQuery:
    url = read_url(options, config)
    query = options.str("query")
    if not query.strip():
        raise options.error("query", "expected a PromQL expression, got an empty string")
    label = options.str("label", None)
    if label is not None and widget.view != "list":
        raise options.error("label", f'labels the rows of a list: use view = "list", not "{widget.view}"')
    return PrometheusQuery(
        url=url,
        query=query,
        label=label,
        headers=read_headers(options),
        timeout=widget.timeout,
        rows=widget.view == "list",
    )
