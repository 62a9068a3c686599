"""The bottom layer: pure code with no I/O that every other layer shares.

sse: the Server-Sent Events wire format; events: the stream's typed control
events; samples: the Sample value; values: the one gate every value passes (text,
numbers, size); views: what each widget view accepts and how it is formatted;
auth: the viewer rules, password hashes and token matching; times: instants as
ISO 8601 or Unix seconds; resources: where the packaged templates, static files
and migrations are. Imports the standard library only (and nothing else from
dashboard).
"""
