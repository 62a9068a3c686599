"""The top: the command line, wiring one server together, roles and several
processes, the ticker lease, systemd, config reload, start-up warnings.

May import every other layer; nothing imports it.
"""
