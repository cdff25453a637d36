"""Sub-commands of the ``botstream`` command line."""
