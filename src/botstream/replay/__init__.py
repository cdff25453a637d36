"""Offline replay of an event log through the same domain core as the live stream."""
