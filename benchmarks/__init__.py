"""``make bench``: scripts that measure botstream and print figures (never part of the tests)."""
