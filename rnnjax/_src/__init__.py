"""The implementation behind rnnjax's public names, in packages by concern.

Each package imports only the packages listed below it (``lint-imports`` checks this, with
the contracts in ``pyproject.toml``):

* ``modules`` | ``interop`` | ``training``: the users of layers, side by side;
* ``decoding``: greedy, sampled and beam-search decoding, attention;
* ``layers``: a cell run over a sequence as a layer; bidirectional, stacks, dropout;
* ``scan``: the drivers, ``rnn`` and ``newton_rnn``: masking, reversal, the fused backward
  pass, truncated backpropagation in chunks;
* ``newton`` | ``cells``: Newton's method over time; the cells, their kit and registry;
* ``linear``: the linear recurrence ``h_t = a_t * h_{t-1} + b_t``, sequential, parallel and
  sharded over time;
* ``core``: the cell contract, the shared settings, argument checks and matmul helpers.

No module imports another package's private (``_``) names, no two modules import each other,
and nothing below ``cells`` (nor ``layers``, ``decoding``) imports a cell family.
"""
