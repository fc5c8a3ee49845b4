"""Newton's method over time for cells with a diagonal Jacobian: block-diagonal linear
solves, the exact and quasi Newton iterations, implicit differentiation at the solution, the
fallback to the sequential scan.

May import: ``core``, ``linear``.
"""
