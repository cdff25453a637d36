"""Kafka plumbing: the local broker for development and tests, topic administration."""
