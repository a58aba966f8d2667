"""Examples shipped with x402sim, installed as the data package ``x402sim.examples``: a spend policy
(``policy.toml``) and a test of your own app with the pytest plugin (``test_paid_api.py``).

pyproject.toml maps this folder to that package, so an installed x402sim carries both:
``importlib.resources.files("x402sim.examples") / "policy.toml"`` is the policy's file.
"""
