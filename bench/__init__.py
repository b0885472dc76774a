"""wxstream's benchmark harness: the gateway beside its peers, measured in the same run.

``python -m bench.run`` (``make bench``) writes ``bench/REPORT.md`` and its plots.
"""
