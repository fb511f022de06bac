"""JetStream publishing, in one place: every message confirmed, through NATS outages.

- `publisher`: the send and confirm loops, re-sending what was not confirmed.
- `pending`: the bounded buffer of messages handed over and not yet in flight.
- `fast_batch`: fast-ingest batches (ADR-50): reply subjects, the server's replies, one batch's state.
- `numbered_acks`: messages sent with an ack each, under one wildcard inbox.
- `bulk`: many publishes built at once and handed to nats-py as one buffer append.
"""
