"""lorakit.report: a run folder's report (loss curve, samples grid, summary) from its events.

``build_report(run_dir)`` (in :mod:`lorakit.report.build`) rewrites ``report.png``,
``samples.png`` and ``report.html``; ``summarize`` (:mod:`lorakit.report.summary`) is the pure
part. matplotlib and Pillow are imported only while drawing.
"""
