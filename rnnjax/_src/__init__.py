"""rnnjax's implementation; import the public names from ``rnnjax``."""
