"""One flat hierarchy of the errors botstream raises on purpose.

Anything derived from :class:`BotstreamError` is an expected failure that the
command line reports as one line (``botstream: <message>``) with a non-zero
exit, never as a traceback.
"""


class BotstreamError(Exception):
    """Base of every error botstream raises on purpose."""


class ConfigError(BotstreamError):
    """A bad flag, environment variable or configuration value."""


class InputFileError(BotstreamError):
    """An input file that is missing or cannot be read."""


class KafkaUnavailableError(BotstreamError):
    """The Kafka broker cannot be reached, started or is missing a topic."""


class BrokerSetupError(BotstreamError):
    """The local Kafka broker could not be fetched, started or stopped."""


class InvalidRecord(BotstreamError):
    """An input record that cannot be processed; it becomes a dead letter.

    ``code`` is a short machine-readable reason (``invalid_json``, ``late``...),
    ``detail`` says exactly what is wrong. ``str()`` gives ``"code: detail"``,
    the dead letter's ``error`` field. ``keep_bytes``, when set, is how many
    leading bytes of the record its dead letter keeps (a too large record's
    dead letter must itself stay small enough to publish).
    """

    def __init__(self, code: str, detail: str, keep_bytes: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.keep_bytes = keep_bytes
