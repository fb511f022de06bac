"""Binance as tradetape knows it, one concept a module; ingest, persist, the bus codec and the history tools use it.

`aggtrade` (an aggTrade object's rules, voids included, per row and over columns),
`streams` and `frames` (the WebSocket side), `rest` (aggTrades pages, exchangeInfo, the
weight budget), `symbols` (`ALL` resolved from exchangeInfo), `dumps` (data.binance.vision's
paths, names, rows and checksum lines). It may use `tradetape.domain`, never the reverse.
"""
