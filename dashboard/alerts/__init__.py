"""Alerting: a widget's value crossing its line becomes an alert, and the right people
are told, once.

rules: what each widget's alert conditions are and how one alert moves (ok, pending,
firing, resolved): pure. silences: maintenance windows and ad hoc silences: pure.
schema and store: the alerts, their transitions, silences and the outbox of
notifications in SQL. engine: evaluation, riding on the samples as they are written,
plus a timer (holds, staleness, repeats, silences ending). message and notifiers: what
a notification says, and the kinds that send it (webhook, ntfy, email, command).
delivery: the outbox, sent with grouping, timeouts, retries and backoff.

Sits between the web and the sources and the hub and the storage: may import core,
config, storage and hub; the web may import it; the sources never do (they only
write samples, which reach the engine through the recorder's publish).
"""
