"""botstream: classifies chatbot conversations and meters billable ones against plan limits."""

__version__ = "0.1.0"
