"""The API's routers, one module per area; each builds an APIRouter from a
:class:`tidal.server.context.ServerContext`."""
