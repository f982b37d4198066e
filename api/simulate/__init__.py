"""A living day driven through the public HTTP API only (``onemap simulate``, the load benchmark).

Nothing here touches the database or imports the server: :mod:`api.simulate.client` is an httpx
client that records per-route latencies, errors and acknowledged writes;
:mod:`api.simulate.world` reads the district (workers, their devices, patrol routes and areas)
through the API; :mod:`api.simulate.day` moves devices along their routes, reports residents'
events, dispatches them as operators and walks them through the lifecycle as workers.
"""

from api.simulate.client import ApiClient, Stats
from api.simulate.day import Simulation, SimulationConfig, Tokens
from api.simulate.world import World, discover

__all__ = ["ApiClient", "Simulation", "SimulationConfig", "Stats", "Tokens", "World", "discover"]
