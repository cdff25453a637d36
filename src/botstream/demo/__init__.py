"""The one-command demo: a local broker, a worker, simulated traffic and a live view.

* :mod:`botstream.demo.processes` runs ``botstream worker`` as a child process
  that cannot outlive the demo;
* :mod:`botstream.demo.board` turns the committed output records into what the
  live view and the final summary show;
* :mod:`botstream.demo.runner` orchestrates a run.
"""
