"""The cells: one module per family (``elman``, ``lstm``, ``gru``, ``minimal``, ``diagonal``,
``lru``), the kit they are built with (``kit``), the wrappers that derive a cell from a cell
(``derived``), the initialisers, and the registry of named kinds (``registry``).

May import: ``core``, ``linear``. The generic packages above use ``kit``, ``derived`` and
``initializers`` only, never a family.
"""
