"""A Python client for a Tidal app served over HTTP (``tidal serve``), with
the shape of the instance API::

    with tidal.Client("http://127.0.0.1:8000", api_key="tidal_…") as client:
        prefs = client.component("Prefs").instance("u1")
        prefs.run("recommend", props={"event": "hiking"})
        client.feedback(prefs.last_run_id, score=1)

``AsyncClient`` is the same with ``await`` (and ``agen`` for streams).
Errors::

    ClientError                     any error answer of the API
    ├── NotFoundError (KeyError)    unknown component / flow / instance / relation; ``known`` lists names
    ├── AuthenticationError         401: no, invalid, revoked or expired credentials
    ├── PermissionDeniedError       403: the key's scope does not reach it
    ├── RequestValidationError (ValueError)  422: ``fields`` names each bad field
    ├── PayloadTooLargeError        413: the body is over the server's limit
    ├── ConflictError               409: e.g. a duplicate record id
    └── ServerError                 5xx: an op failed, or the server did
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from .exceptions import TidalError


class ClientError(TidalError):
    """Raised when the API answers with an error; ``status``, ``code`` and
    ``body`` hold the answer."""

    def __init__(self, message: str, status: int, code: str, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFoundError(ClientError, KeyError):
    """Raised on 404; ``known`` lists the names that exist."""

    @property
    def known(self) -> list[str]:
        return list(self.body.get("known", [])) if isinstance(self.body, dict) else []


class AuthenticationError(ClientError):
    """Raised on 401: credentials missing, invalid, revoked or expired."""


class PermissionDeniedError(ClientError):
    """Raised on 403: the credentials' scope does not reach the target."""


class RequestValidationError(ClientError, ValueError):
    """Raised on 422; ``fields`` names each bad field (``props.k``)."""

    @property
    def fields(self) -> list[str]:
        detail = self.body.get("detail", []) if isinstance(self.body, dict) else []
        return [".".join(str(p) for p in d.get("loc", [])[1:]) for d in detail]


class PayloadTooLargeError(ClientError):
    """Raised on 413: the request body is over the server's limit."""


class ConflictError(ClientError):
    """Raised on 409."""


class ServerError(ClientError):
    """Raised on 5xx: an op failed (the message has its error) or the server did."""


_BY_STATUS: dict[int, type[ClientError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: RequestValidationError,
}


def _error(status: int, content: bytes) -> ClientError:
    try:
        body: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = content.decode(errors="replace")
    message = body.get("message") if isinstance(body, dict) else None
    code = body.get("error", "") if isinstance(body, dict) else ""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ClientError)
    return cls(f"HTTP {status}: {message or body or 'no details'}", status, str(code), body)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise _error(response.status_code, response.content)
    return orjson.loads(response.content) if response.content else None


def _headers(api_key: str | None, token: str | None) -> dict[str, str]:
    credential = api_key or token
    return {"Authorization": f"Bearer {credential}"} if credential else {}


def _relation_name(relation: str | type) -> str:
    return relation if isinstance(relation, str) else str(relation.relation())  # type: ignore[attr-defined]


def _record(record: Any) -> Any:
    from pydantic import BaseModel

    if not isinstance(record, BaseModel):
        return dict(record)
    data = record.model_dump(mode="json")
    for stamp in ("created_at", "updated_at"):  # set by the server
        if data.get(stamp) is None:
            data.pop(stamp, None)
    return data


def _run_body(props: Mapping[str, Any] | None, ignore_cache: bool, force_refresh: bool, flush_update: bool) -> Any:
    return {
        "props": dict(props or {}),
        "ignore_cache": ignore_cache,
        "force_refresh": force_refresh,
        "flush_update": flush_update,
    }


def _stream_line(line: str | bytes) -> tuple[str, Any]:
    data = orjson.loads(line)
    if "item" in data:
        return "item", data["item"]
    if "error" in data:
        raise ServerError(f"stream failed: {data.get('message', data['error'])}", 500, str(data["error"]), data)
    return "done", data


def _path(component: str, instance: str, flow: str | None = None) -> str:
    base = f"/components/{quote(component, safe='')}/instances/{quote(instance, safe='')}"
    return f"{base}/flows/{quote(flow, safe='')}" if flow else base


# ----------------------------------------------------------------------------- sync


class Client:
    """A synchronous client of the HTTP API at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key, token), timeout=timeout, transport=transport
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; the decoded JSON answer, or a ClientError."""
        return _check(self._http.request(method, path, **kwargs))

    def component(self, name: str) -> ComponentClient:
        return ComponentClient(self, name)

    def components(self) -> list[dict[str, Any]]:
        """The components and their flows."""
        result: list[dict[str, Any]] = self.request("GET", "/components")
        return result

    def insert(self, relation: str | type, record: Any) -> dict[str, Any]:
        """Insert one record (a dict or a Record); the stored record."""
        stored: dict[str, Any] = self.request("POST", f"/relations/{_relation_name(relation)}", json=_record(record))[
            "records"
        ][0]
        return stored

    def insert_many(self, relation: str | type, records: list[Any]) -> list[dict[str, Any]]:
        """Insert records, all or nothing."""
        body = [_record(r) for r in records]
        stored: list[dict[str, Any]] = self.request("POST", f"/relations/{_relation_name(relation)}/batch", json=body)[
            "records"
        ]
        return stored

    def query(
        self,
        relation: str | type,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | list[str] = "created_at",
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Records whose fields equal ``where``'s values."""
        body = {"where": dict(where or {}), "order_by": order_by, "limit": limit, "offset": offset}
        found: list[dict[str, Any]] = self.request("POST", f"/relations/{_relation_name(relation)}/query", json=body)[
            "records"
        ]
        return found

    def feedback(
        self, run_id: str, score: float | None = None, label: str | None = None, comment: str | None = None
    ) -> dict[str, Any]:
        """Give feedback on a run (``instance.last_run_id``)."""
        body = {"score": score, "label": label, "comment": comment}
        stored: dict[str, Any] = self.request("POST", f"/runs/{run_id}/feedback", json=body)
        return stored

    def freshness(self) -> list[dict[str, Any]]:
        """Queue depth and update lag per component."""
        rows: list[dict[str, Any]] = self.request("GET", "/queue")
        return rows

    def ready(self) -> bool:
        """Whether the server's store and database answer."""
        return self._http.get("/readyz").status_code == 200

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ComponentClient:
    """A component of the served app."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def instance(self, instance_id: str) -> InstanceClient:
        return InstanceClient(self.client, self.name, instance_id)

    def instances(self) -> list[str]:
        """Ids of the component's instances."""
        return [i["id"] for i in self.client.request("GET", f"/components/{self.name}/instances")["instances"]]

    def describe(self) -> dict[str, Any]:
        """Flows (with props schemas) and triggers."""
        info: dict[str, Any] = self.client.request("GET", f"/components/{self.name}")
        return info


class InstanceClient:
    """An instance, driven over HTTP like :class:`tidal.Instance`."""

    def __init__(self, client: Client, component: str, instance_id: str) -> None:
        self.client = client
        self.component = component
        self.instance_id = instance_id
        self.last_run_id: str | None = None
        """The run id of the latest run made through this handle."""
        self.last_version: int | None = None
        """The state version the server reported with it."""

    def run(
        self,
        flow: str,
        props: Mapping[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Any:
        """Run a flow; its serve op's result."""
        body = _run_body(props, ignore_cache, force_refresh, flush_update)
        answer = self.client.request("POST", _path(self.component, self.instance_id, flow), json=body)
        self.last_run_id, self.last_version = answer["run_id"], answer["version"]
        return answer["result"]

    def gen(
        self,
        flow: str,
        props: Mapping[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Iterator[Any]:
        """Run a flow and yield its items as the server streams them."""
        body = _run_body(props, ignore_cache, force_refresh, flush_update)
        path = _path(self.component, self.instance_id, flow) + "/stream"
        with self.client._http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                raise _error(response.status_code, response.read())
            for line in response.iter_lines():
                if line:
                    kind, data = _stream_line(line)
                    if kind == "item":
                        yield data
                    else:
                        self.last_run_id, self.last_version = data["run_id"], data["version"]

    def state(self) -> dict[str, Any]:
        """Version and keys (type, size, value) of the instance's state."""
        view: dict[str, Any] = self.client.request("GET", _path(self.component, self.instance_id) + "/state")
        return view

    def read_state(self, key: str, default_value: Any = None) -> Any:
        """The value of one state key (its JSON form), or ``default_value``."""
        view = self.client.request("GET", _path(self.component, self.instance_id) + "/state", params={"keys": [key]})
        entry = view["keys"].get(key)
        return default_value if entry is None else entry["value"]

    def get_version(self) -> int:
        return int(self.state()["version"])


# ----------------------------------------------------------------------------- async


class AsyncClient:
    """The asynchronous twin of :class:`Client`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key, token), timeout=timeout, transport=transport
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return _check(await self._http.request(method, path, **kwargs))

    def component(self, name: str) -> AsyncComponentClient:
        return AsyncComponentClient(self, name)

    async def components(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", "/components")
        return result

    async def insert(self, relation: str | type, record: Any) -> dict[str, Any]:
        answer = await self.request("POST", f"/relations/{_relation_name(relation)}", json=_record(record))
        stored: dict[str, Any] = answer["records"][0]
        return stored

    async def insert_many(self, relation: str | type, records: list[Any]) -> list[dict[str, Any]]:
        body = [_record(r) for r in records]
        answer = await self.request("POST", f"/relations/{_relation_name(relation)}/batch", json=body)
        stored: list[dict[str, Any]] = answer["records"]
        return stored

    async def query(
        self,
        relation: str | type,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | list[str] = "created_at",
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        body = {"where": dict(where or {}), "order_by": order_by, "limit": limit, "offset": offset}
        answer = await self.request("POST", f"/relations/{_relation_name(relation)}/query", json=body)
        found: list[dict[str, Any]] = answer["records"]
        return found

    async def feedback(
        self, run_id: str, score: float | None = None, label: str | None = None, comment: str | None = None
    ) -> dict[str, Any]:
        body = {"score": score, "label": label, "comment": comment}
        stored: dict[str, Any] = await self.request("POST", f"/runs/{run_id}/feedback", json=body)
        return stored

    async def freshness(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.request("GET", "/queue")
        return rows

    async def ready(self) -> bool:
        return (await self._http.get("/readyz")).status_code == 200

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncComponentClient:
    def __init__(self, client: AsyncClient, name: str) -> None:
        self.client = client
        self.name = name

    def instance(self, instance_id: str) -> AsyncInstanceClient:
        return AsyncInstanceClient(self.client, self.name, instance_id)

    async def instances(self) -> list[str]:
        answer = await self.client.request("GET", f"/components/{self.name}/instances")
        return [i["id"] for i in answer["instances"]]


class AsyncInstanceClient:
    """:class:`InstanceClient` for async code."""

    def __init__(self, client: AsyncClient, component: str, instance_id: str) -> None:
        self.client = client
        self.component = component
        self.instance_id = instance_id
        self.last_run_id: str | None = None
        self.last_version: int | None = None

    async def run(
        self,
        flow: str,
        props: Mapping[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Any:
        body = _run_body(props, ignore_cache, force_refresh, flush_update)
        answer = await self.client.request("POST", _path(self.component, self.instance_id, flow), json=body)
        self.last_run_id, self.last_version = answer["run_id"], answer["version"]
        return answer["result"]

    arun = run

    async def agen(
        self,
        flow: str,
        props: Mapping[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> AsyncIterator[Any]:
        body = _run_body(props, ignore_cache, force_refresh, flush_update)
        path = _path(self.component, self.instance_id, flow) + "/stream"
        async with self.client._http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                raise _error(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if line:
                    kind, data = _stream_line(line)
                    if kind == "item":
                        yield data
                    else:
                        self.last_run_id, self.last_version = data["run_id"], data["version"]

    async def state(self) -> dict[str, Any]:
        view: dict[str, Any] = await self.client.request("GET", _path(self.component, self.instance_id) + "/state")
        return view

    async def read_state(self, key: str, default_value: Any = None) -> Any:
        view = await self.client.request(
            "GET", _path(self.component, self.instance_id) + "/state", params={"keys": [key]}
        )
        entry = view["keys"].get(key)
        return default_value if entry is None else entry["value"]

    async def get_version(self) -> int:
        return int((await self.state())["version"])
