"""The HTTP side: the URL table, pages, the event stream, the JSON and push API,
health and metrics, sign-in, response headers.

May import core, config, hub and storage; never sources or service (what it needs
of the scheduler reaches it through the Runtime).
"""
