"""The endpoint registry and the transports generated from it."""
