"""Phase stability under pressure: candidate structures (:mod:`.candidates`), relaxation and
enthalpy (:mod:`.relax`), hulls, stability ranges and transition pressures (:mod:`.stability`).
The stage that runs them for a campaign is :mod:`al_loop.stages.phase`."""
