"""The bottom layer: pure code with no I/O that every other layer shares.

sse: the Server-Sent Events wire format; samples: the Sample value; views: what
each widget view accepts and how it is formatted; auth: the viewer rules,
password hashes and token matching. Imports the standard library only (and
nothing else from dashboard).
"""
