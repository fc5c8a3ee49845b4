"""Development tools of the repository (not installed with rnnjax)."""
