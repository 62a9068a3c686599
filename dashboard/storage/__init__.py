"""History in SQL: the tables, the store (engine, migrations, queries), the writer
every new sample goes through, and retention.

May import dashboard.core and dashboard.config; never the hub (what the writer
publishes is handed to it as a callback), sources, web or service.
"""
