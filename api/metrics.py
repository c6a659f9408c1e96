"""Prometheus metrics: ``GET /metrics`` in the text exposition format (prometheus-client).

Counters of things that happened are kept by subscribers of the event bus (finished calls by
disposition, from the CDR event) or read from the SIP core's and the security guard's own
counters; gauges (calls in progress, registrations, queues, agents, media workers, trunks) are
read from the services' summaries at scrape time, so a scrape costs the loop one pass over them
and nothing between scrapes. The route needs the API credential like every other (Prometheus:
``authorization: {credentials_file: ...}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..events import CallEnded, Event, EventBus, Subscription

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class CallOutcomes:
    """Finished calls by disposition and by the kind of source (extension, trunk, switch)."""

    def __init__(self, bus: EventBus) -> None:
        self.by_disposition: Counter[tuple[str, str]] = Counter()
        self.subscription: Subscription = bus.subscribe(self._on_ended, CallEnded)

    def _on_ended(self, event: Event) -> None:
        if not isinstance(event, CallEnded):
            return
        for record in event.records:
            if record.leg == "call":
                source = record.source.partition(":")[0] or "switch"
                self.by_disposition[(record.disposition, source)] += 1

    def close(self) -> None:
        self.subscription.close()


class _Snapshot:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=labels)


def families(status: dict[str, Any], media: list[dict[str, Any]], acd: dict[str, Any],
             outcomes: CallOutcomes, sip_in: dict[str, dict[Any, int]],
             webhooks: dict[str, Any] | None = None) -> list[Metric]:
    """Every metric family from one reading of the switch (pure: tested without sockets)."""
    out: list[Metric] = [_gauge("centralino_uptime_seconds", "Seconds since the switch started", status["uptime"])]

    requests = CounterMetricFamily("centralino_sip_requests_received", "SIP requests received, by method",
                                   labels=["method"])
    for method, n in sorted(sip_in["requests"].items()):
        requests.add_metric([method], n)
    responses = CounterMetricFamily("centralino_sip_responses_received", "SIP responses received, by status code",
                                    labels=["code"])
    for code, n in sorted(sip_in["responses"].items()):
        responses.add_metric([str(code)], n)
    out += [requests, responses]
    counters = status["counters"]
    for key, doc in (("rejected", "Malformed or refused SIP requests answered with an error"),
                     ("shed", "New calls turned away with 503 by overload control"),
                     ("stray_responses", "Responses matching no transaction"),
                     ("udp_send_drops", "Datagrams dropped on a full UDP send buffer"),
                     ("udp_backlog_drops", "New INVITEs dropped unread from a full backlog")):
        out.append(CounterMetricFamily(f"centralino_sip_{key}", doc, value=counters.get(key, 0)))
    txns = _gauge("centralino_sip_transactions", "SIP transactions alive, by kind and state", labels=["kind", "state"])
    for kind_state, n in sorted(status["transactions"]["by_state"].items()):
        kind, _, state = kind_state.partition(":")
        txns.add_metric([kind, state], n)
    out.append(txns)
    out.append(_gauge("centralino_registrations", "Registered contacts", len(status["registrations"])))
    out.append(_gauge("centralino_connections", "Open TCP/TLS connections", status["connections"]))

    calls = status["calls"]
    out.append(_gauge("centralino_calls_active", "Calls in progress", calls["active"]))
    out.append(_gauge("centralino_calls_answered_active", "Calls in progress that are answered", calls["answered"]))
    ended = CounterMetricFamily("centralino_calls_ended", "Finished calls, by disposition and source kind",
                                labels=["disposition", "source"])
    for (disposition, source), n in sorted(outcomes.by_disposition.items()):
        ended.add_metric([disposition, source], n)
    out.append(ended)

    up = _gauge("centralino_trunk_up", "1 when a trunk is reachable (and registered if it registers)", labels=["trunk"])
    for name, trunk in sorted(status["trunks"].items()):
        reachable = trunk.get("reachable") is not False and (not trunk.get("register") or bool(trunk.get("registered")))
        up.add_metric([name], 1.0 if reachable else 0.0)
    out.append(up)

    security = status["security"]
    dropped = CounterMetricFamily("centralino_security_dropped", "Requests dropped by the security guard, by reason",
                                  labels=["reason"])
    for reason in ("rate_limited", "banned", "user_agent"):
        dropped.add_metric([reason], security.get(f"dropped_{reason}", 0))
    out.append(dropped)
    out.append(_gauge("centralino_security_bans", "Addresses banned now", len(security["bans"])))
    out.append(_gauge("centralino_security_locked_users", "Users locked out now", len(security["locked_users"])))
    out.append(CounterMetricFamily("centralino_api_refused", "Control API requests refused (credential, Host, Origin)",
                                   value=security.get("api_refused", 0)))

    rx = CounterMetricFamily("centralino_media_packets_received", "RTP packets received, by media worker", labels=["worker"])
    tx = CounterMetricFamily("centralino_media_packets_sent", "RTP packets sent, by media worker", labels=["worker"])
    lost = CounterMetricFamily("centralino_media_packets_lost", "RTP packets missing (sequence gaps), by media worker",
                               labels=["worker"])
    endpoints = _gauge("centralino_media_endpoints", "RTP endpoints open, by media worker", labels=["worker"])
    tick = _gauge("centralino_media_tick_milliseconds", "Average duration of the 20 ms media tick, by worker",
                  labels=["worker"])
    for w in media:
        if w.get("ok") is False:
            continue
        label = [str(w["worker"])]
        rx.add_metric(label, w.get("rx", 0))
        tx.add_metric(label, w.get("tx", 0))
        lost.add_metric(label, w.get("lost", 0))
        endpoints.add_metric(label, w.get("endpoints", 0))
        if w.get("tick_ms_avg") is not None:
            tick.add_metric(label, w["tick_ms_avg"])
    out += [rx, tx, lost, endpoints, tick]

    waiting = _gauge("centralino_queue_waiting", "Callers waiting, by queue", labels=["queue"])
    longest = _gauge("centralino_queue_longest_wait_seconds", "Longest current wait, by queue", labels=["queue"])
    offered = _gauge("centralino_queue_offered_today", "Calls offered today, by queue", labels=["queue"])
    abandoned = _gauge("centralino_queue_abandoned_today", "Calls abandoned today, by queue", labels=["queue"])
    sl = _gauge("centralino_queue_service_level_ratio", "Share answered within the service level today",
                labels=["queue"])
    agents = _gauge("centralino_queue_agents", "Agents of a queue, by state", labels=["queue", "state"])
    for name, q in sorted(acd["queues"].items()):
        waiting.add_metric([name], q.get("waiting", 0))
        longest.add_metric([name], q.get("longest_wait", 0.0))
        offered.add_metric([name], q.get("offered", 0))
        abandoned.add_metric([name], q.get("abandoned", 0))
        if q.get("service_level") is not None:
            sl.add_metric([name], q["service_level"])
        for state, n in sorted(q.get("agents", {}).items()):
            agents.add_metric([name, state], n)
    out += [waiting, longest, offered, abandoned, sl, agents]
    if webhooks is not None:
        backlog = _gauge("centralino_webhook_backlog", "Webhook deliveries waiting, by endpoint", labels=["webhook"])
        dead = _gauge("centralino_webhook_dead_letters", "Webhook deliveries given up, by endpoint", labels=["webhook"])
        for name, w in sorted(webhooks.items()):
            backlog.add_metric([name], w.get("pending", 0))
            dead.add_metric([name], w.get("dead", 0))
        out += [backlog, dead]
    return out


def render(metric_families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metric_families))  # type: ignore[arg-type]
    return generate_latest(registry)
