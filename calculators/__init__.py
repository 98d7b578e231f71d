"""Everything that turns atoms into energy, forces and stress (ASE ``Atoms`` in, results out).

Two kinds, two sub-packages, two interfaces:

- :mod:`calculators.oracles`: reference codes that label structures (EMT, Quantum ESPRESSO,
  VASP): one :class:`~calculators.oracles.base.Oracle` base, typed settings split into physics
  and execution, a registry, and a conformance test every code passes.
- :mod:`calculators.models`: machine-learned models (the MACE committee, its training, the
  stand-in foundation, the student to come): one model interface and one validator every model
  passes.
"""
