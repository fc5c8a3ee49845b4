"""The cell contract (:class:`~rnnjax.Cell` and its capabilities), the settings shared by
``rnn``, ``layer`` and the modules, argument checks and the matmul helpers.

Imports nothing from rnnjax: everything else builds on it.
"""
