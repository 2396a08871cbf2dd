"""The files here are training scripts that tests run with ``tlaudit run``; they are not test modules."""

collect_ignore_glob = ["*.py"]
