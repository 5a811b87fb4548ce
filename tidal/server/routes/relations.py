"""Relations: ``GET /relations``, ``POST /relations/{r}`` (insert one),
``POST /relations/{r}/batch`` (insert many, all or nothing) and
``POST /relations/{r}/query`` (equality filters, order, limit).

Each relation gets typed routes (its record model as the body); generic
routes after them answer 404 with the known relations."""

# No `from __future__ import annotations`: per-relation models are local
# variables that FastAPI must see as real annotations.

from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...relations import Record
from ..context import SAFE_NAME, ServerContext
from ..errors import APIError
from ..models import QueryRequest, where_model
from ..scopes import Principal

MAX_BATCH = 1000
"""Most records one batch insert takes."""


class RelationInfo(BaseModel):
    name: str
    record: str = Field(description="The Record class.")
    insertable: bool
    json_schema: dict[str, Any]


class Records(BaseModel):
    records: list[dict[str, Any]]


def _dump(records: list[Record]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]


def _insertable(ctx: ServerContext, name: str) -> None:
    if name in ctx.read_only_relations:
        how = "POST /runs/{run_id}/feedback" if name == "feedback" else "running flows"
        raise APIError(405, "read_only_relation", f"relation {name!r} is written by {how}, not inserted directly")


def _insert(ctx: ServerContext, name: str, records: list[Any], principal: Principal) -> JSONResponse:
    cls = ctx.relation(name, principal)
    principal.require_relation(name, write=True)
    _insertable(ctx, name)
    if len(records) > MAX_BATCH:
        raise APIError(413, "batch_too_large", f"at most {MAX_BATCH} records per batch, got {len(records)}")
    items = [r.model_dump() if isinstance(r, BaseModel) else r for r in records]
    stored = ctx.app.insert_many(items, relation=cls)
    return JSONResponse({"records": _dump(stored)}, status_code=201)


def _query(ctx: ServerContext, name: str, body: Any, principal: Principal) -> JSONResponse:
    cls = ctx.relation(name, principal)
    principal.require_relation(name)
    where = body.where.model_dump(exclude_unset=True) if isinstance(body.where, BaseModel) else dict(body.where)
    if name == "runs" and ctx.app.runlog is not None:
        ctx.app.runlog.flush()
    scope = principal.scope
    if name in INSTANCE_SCOPED and scope is not None and (scope.components, scope.instances) != (("*",), ("*",)):
        found = _scoped_query(ctx, cls, where, body, principal)
    else:
        found = ctx.app.query(cls, where, order_by=body.order_by, limit=body.limit, offset=body.offset)
    return JSONResponse({"records": _dump(found)})


INSTANCE_SCOPED = frozenset({"runs", "feedback"})
"""Built-in relations whose records belong to an instance (their
``component`` and ``instance`` fields): a scoped caller reads only those of
the instances its scope reaches, whatever its relation patterns say."""

SCAN_PAGE = 500
"""Rows read per page when a scope filters a query's rows."""


def _scoped_query(
    ctx: ServerContext, cls: type[Record], where: dict[str, Any], body: Any, principal: Principal
) -> list[Record]:
    """``body``'s query, keeping only the records of instances ``principal``
    may read; offset and limit count the kept records. Scope patterns are
    shell-style, so the rows are filtered here, page by page, in order."""
    component, instance = where.get("component"), where.get("instance")
    if isinstance(component, str) and isinstance(instance, str) and not principal.can(component, instance):
        return []
    kept: list[Record] = []
    skip, start = body.offset, 0
    while True:
        page = ctx.app.query(cls, where, order_by=body.order_by, limit=SCAN_PAGE, offset=start)
        for record in page:
            if not principal.can(getattr(record, "component", ""), getattr(record, "instance", "")):
                continue
            if skip:
                skip -= 1
                continue
            kept.append(record)
            if len(kept) >= body.limit:
                return kept
        if len(page) < SCAN_PAGE:
            return kept
        start += SCAN_PAGE


class AnyQuery(QueryRequest):
    where: dict[str, Any] = Field(default_factory=dict, description="Field -> value; records must equal each.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown relation; the body lists the known ones."},
    413: {"description": "Request body over the size limit."},
    422: {"description": "A record failing validation; the body names the field."},
}


def _relation_routes(ctx: ServerContext, api: APIRouter, name: str, cls: type[Record]) -> None:
    query_model = where_model(cls)
    tag = f"relation {name}"

    def query(body: query_model = Body(None), principal: Principal = Depends(ctx.principal)) -> JSONResponse:  # type: ignore[valid-type]
        return _query(ctx, name, body or query_model(), principal)

    api.add_api_route(
        f"/relations/{name}/query",
        query,
        methods=["POST"],
        response_model=Records,
        responses=_ERRORS,
        tags=[tag],
        summary=f"Query {name}",
        operation_id=f"query_{name}",
    )
    if name in ctx.read_only_relations:
        return

    def insert(record: cls = Body(), principal: Principal = Depends(ctx.principal)) -> JSONResponse:  # type: ignore[valid-type]
        return _insert(ctx, name, [record], principal)

    def insert_batch(
        records: list[cls] = Body(max_length=MAX_BATCH),  # type: ignore[valid-type]
        principal: Principal = Depends(ctx.principal),
    ) -> JSONResponse:
        return _insert(ctx, name, records, principal)

    api.add_api_route(
        f"/relations/{name}",
        insert,
        methods=["POST"],
        status_code=201,
        response_model=Records,
        responses=_ERRORS,
        tags=[tag],
        summary=f"Insert a {cls.__name__}",
        operation_id=f"insert_{name}",
    )
    api.add_api_route(
        f"/relations/{name}/batch",
        insert_batch,
        methods=["POST"],
        status_code=201,
        response_model=Records,
        responses=_ERRORS,
        tags=[tag],
        summary=f"Insert many {cls.__name__} records, all or nothing",
        operation_id=f"insert_many_{name}",
    )


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()

    @api.get("/relations", response_model=list[RelationInfo], tags=["relations"])
    def list_relations(principal: Principal = Depends(ctx.principal)) -> list[RelationInfo]:
        """The relations this API exposes (those the caller may read)."""
        return [
            RelationInfo(
                name=name,
                record=cls.__name__,
                insertable=name not in ctx.read_only_relations,
                json_schema=cls.model_json_schema(),
            )
            for name, cls in sorted(ctx.relations.items())
            if principal.can_relation(name)
        ]

    for name, cls in sorted(ctx.relations.items()):
        if SAFE_NAME.match(name):
            _relation_routes(ctx, api, name, cls)

    def insert_any(
        relation: str, record: dict[str, Any] = Body(), principal: Principal = Depends(ctx.principal)
    ) -> JSONResponse:
        """Insert a record into any relation (404 lists the known ones)."""
        return _insert(ctx, relation, [record], principal)

    def insert_many_any(
        relation: str,
        records: list[dict[str, Any]] = Body(max_length=MAX_BATCH),
        principal: Principal = Depends(ctx.principal),
    ) -> JSONResponse:
        """Insert records into any relation, all or nothing."""
        return _insert(ctx, relation, records, principal)

    def query_any(
        relation: str, body: AnyQuery | None = None, principal: Principal = Depends(ctx.principal)
    ) -> JSONResponse:
        """Query any relation."""
        return _query(ctx, relation, body or AnyQuery.model_validate({}), principal)

    for path, fn in (("/relations/{relation}", insert_any), ("/relations/{relation}/batch", insert_many_any)):
        api.add_api_route(
            path, fn, methods=["POST"], status_code=201, response_model=Records, responses=_ERRORS, tags=["relations"]
        )
    api.add_api_route(
        "/relations/{relation}/query",
        query_any,
        methods=["POST"],
        response_model=Records,
        responses=_ERRORS,
        tags=["relations"],
    )
    return api
