"""The reliability harness: long runs that print figures and write docs/reliability.md.

    python -m reliability fuzz|all [options]     (make reliability, make fuzz)

Each section is a module ``reliability/<section>.py`` with a ``main(argv) ->
int``; it prints its figures and writes its own block of
``docs/reliability.md`` through :func:`reliability.report.write_section`, so
sections run and are documented independently. The quick versions of the same
checks run in the normal test suite.
"""
