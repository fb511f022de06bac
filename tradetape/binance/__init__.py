"""Binance's REST API as tradetape uses it (aggTrades pages, exchangeInfo), shared by ingest and the history tools."""
