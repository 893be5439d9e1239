"""The connection to Klippy: framing, the reconnecting connection and merged subscriptions."""
