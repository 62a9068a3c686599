"""A live dashboard server: tickers -> SQL store -> hub -> Server-Sent Events -> page."""

__version__ = "0.1.0"
