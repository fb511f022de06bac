"""The ground floor: file and task plumbing every layer may use (backoff, task cancellation, the data
directory's lock, scratch directories, private files, URL files, redaction). It imports nothing of
tradetape but `errors`, so the bus, the store and Binance's client need not reach up into `runtime`.
"""
