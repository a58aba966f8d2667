"""The scenarios shipped with x402sim, installed as the data package ``x402sim.scenarios``.

pyproject.toml maps this folder to that package, so the TOML files stay here at the top of the
repository and are also inside every install: ``x402sim scenarios`` lists them and
``x402sim run quickstart`` runs one by name (``x402sim.sim.shipped``).
"""
