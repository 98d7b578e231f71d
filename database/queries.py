"""Label queries users make: campaign, iteration, elements, pressure range, status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LabelQuery:
    """A filter on label documents; unset fields do not filter.

    ``elements``: labels containing all of these elements; ``chemsys``: exactly this chemical
    system (e.g. ``"Fe-Ni"``, any order); pressures are the labels' computed pressures in GPa.
    """

    campaign: str | None = None
    iteration: int | None = None
    elements: list[str] | None = None
    chemsys: str | None = None
    pressure_min_GPa: float | None = None
    pressure_max_GPa: float | None = None
    status: str | list[str] | None = None
    #: A label identity, or several (a campaign's labels have one per subset of its elements).
    physics_hash: str | list[str] | None = None

    def to_filter(self) -> dict[str, Any]:
        """The MongoDB filter document."""
        flt: dict[str, Any] = {}
        request: dict[str, Any] = {}
        if self.campaign is not None:
            request["campaign"] = self.campaign
        if self.iteration is not None:
            request["iteration"] = self.iteration
        if len(request) == 1 and "campaign" in request:
            flt["requests.campaign"] = self.campaign
        elif request:
            flt["requests"] = {"$elemMatch": request}
        if self.elements:
            flt["elements"] = {"$all": sorted(set(self.elements))}
        if self.chemsys:
            flt["chemsys"] = "-".join(sorted(set(self.chemsys.split("-"))))
        pressure: dict[str, float] = {}
        if self.pressure_min_GPa is not None:
            pressure["$gte"] = float(self.pressure_min_GPa)
        if self.pressure_max_GPa is not None:
            pressure["$lte"] = float(self.pressure_max_GPa)
        if pressure:
            flt["pressure_GPa"] = pressure
        if isinstance(self.status, str):
            flt["status"] = self.status
        elif self.status:
            flt["status"] = {"$in": list(self.status)}
        if isinstance(self.physics_hash, str):
            flt["physics_hash"] = self.physics_hash
        elif self.physics_hash is not None:
            flt["physics_hash"] = {"$in": list(self.physics_hash)}
        return flt

    def to_pipeline(self) -> list[dict[str, Any]]:
        """The filter as aggregation stages: an index-shaped ``$match`` first, the rest after.

        The first stage holds only what one index answers (equalities and at most one range:
        (campaign, iteration, status) or (campaign, status, pressure)), so servers with a simple
        planner (the embedded secantusdb) scan the index instead of the collection: measured 4x
        faster at 20,000 labels. The second stage keeps the exact filter. MongoDB merges them.
        """
        flt = self.to_filter()
        first: dict[str, Any] = {}
        if self.campaign is not None:
            first["requests.campaign"] = self.campaign
            if self.iteration is not None:  # a superset; the $elemMatch stays in stage two
                first["requests.iteration"] = self.iteration
        if isinstance(self.status, str):
            first["status"] = flt.pop("status")
        if "pressure_GPa" in flt and "requests.iteration" not in first:
            first["pressure_GPa"] = flt.pop("pressure_GPa")
        flt.pop("requests.campaign", None)
        stages = [{"$match": stage} for stage in (first, flt) if stage]
        return stages or [{"$match": {}}]
