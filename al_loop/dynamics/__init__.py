"""Dynamics with the student in LAMMPS: liquids (diffusion, RDF) and melting lines."""
