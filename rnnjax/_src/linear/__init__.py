"""The linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over a time axis: sequential, as a
parallel (associative) scan, in chunks, and sharded over time across devices; the complex
carry convention of :class:`~rnnjax.LinearScan`.

May import: ``core``.
"""
