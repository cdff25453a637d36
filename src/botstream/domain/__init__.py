"""The pure domain core: events, conversations, classification, metering, alerts.

Imports only the standard library, so it runs the same in the live stream and in
the offline replay, and can be tested without Kafka.
"""
