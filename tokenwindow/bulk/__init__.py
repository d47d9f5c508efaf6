"""Bulk compression of offline transcripts, the producer side of ``tokenwindow compress``.

Reading inputs, the resumable output file, progress, the summary, and fanning transcripts out to
the workers by task name. Nothing here imports worker code: the in-process runner lives in
``workers.bulk`` and only ``--local`` loads it.
"""
