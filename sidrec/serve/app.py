"""``sidrec serve``: an HTTP recommendation service over a finished run (FastAPI + uvicorn).

FastAPI because the request schemas it validates are also the OpenAPI docs it serves at ``/docs``, and uvicorn
because it is the ASGI server FastAPI is developed against; both are maintained and small.

Endpoints:
    POST /recommend        {"history": [item ids, oldest first], "topk": 10, "exclude_history": false,
                            "explain": false}
                           -> {"items": [{"item_id", "title", "sid", "score", "why"?}], "model", "latency_ms"}
    POST /recommend/batch  {"users": [<a /recommend body>, ...]} -> {"results": [{"items": [...]}, ...], ...}
    GET  /health           model, catalogue size, batching counters
    GET  /items/{item_id}  the item's row and SID
    POST /reload           re-read the run's catalogue (after ``sidrec add-items``), no restart
    GET  /docs             OpenAPI docs

A bad request gets a 4xx whose body names every field at fault: ``{"detail": "topk: ...", "errors": [{"field",
"message"}]}`` (400 malformed JSON, 404 unknown item in the path, 413 body too large, 422 anything else).
Queries from concurrent requests are decoded together (:mod:`sidrec.serve.batching`).
"""

from __future__ import annotations

import difflib
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from sidrec.serve.batching import DynamicBatcher
from sidrec.serve.config import ServeConfig
from sidrec.serve.recommender import Query, Recommender, history_problems

log = logging.getLogger(__name__)


class RecommendRequest(BaseModel):
    """One user's history and what to return. Strict types: ``"5"`` is not a topk, ``"yes"`` not a flag."""

    model_config = ConfigDict(extra="forbid", strict=True)
    history: list[str] = Field(description="item ids the user interacted with, oldest first",
                               examples=[["S00001", "S00017"]])
    topk: int = Field(10, description="items to return (1 to the server's max_topk)")
    exclude_history: bool = Field(False, description="leave the history's own items out of the answer")
    explain: bool = Field(False, description="add `why` to each item: SID-token keywords, shared attributes")


class BatchRequest(BaseModel):
    """Many users at once; each entry is a /recommend body."""

    model_config = ConfigDict(extra="forbid", strict=True)
    users: list[RecommendRequest]


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None = None
    sid: str
    score: float = Field(description="log-probability of the item's SID under the model")
    why: dict[str, Any] | None = None


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model: str
    latency_ms: float


class UserResult(BaseModel):
    items: list[RecommendedItem]


class BatchResponse(BaseModel):
    results: list[UserResult]
    model: str
    latency_ms: float


class RequestProblems(Exception):
    """A request the service cannot answer: ``problems`` are ``(field, message)`` pairs, ``status`` its 4xx."""

    def __init__(self, problems: list[tuple[str, str]], status: int = 422):
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems
        self.status = status


def problem_response(problems: list[tuple[str, str]], status: int) -> JSONResponse:
    return JSONResponse({"detail": "; ".join(f"{f}: {m}" for f, m in problems),
                         "errors": [{"field": f, "message": m} for f, m in problems]}, status_code=status)


def field_name(loc: tuple | list) -> str:
    """``("body", "users", 3, "history", 1)`` -> ``"users[3].history[1]"``."""
    name = ""
    for part in loc[1:] if loc and loc[0] in ("body", "path", "query") else loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validation_message(error: dict, path: str) -> str:
    """Pydantic's message; for a field the request may not have, the known fields and the nearest one."""
    if error.get("type") != "extra_forbidden":
        return error.get("msg", "invalid")
    loc = error.get("loc", ())
    model = BatchRequest if path.endswith("/batch") and "users" not in loc[:-1] else RecommendRequest
    known = list(model.model_fields)
    near = difflib.get_close_matches(str(loc[-1]) if loc else "", known, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"unknown field; {hint}known: {', '.join(known)}"


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 naming the limit, whether the client declared
    its length (refused before reading) or streams it chunked (refused once the limit is passed)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> HTTPException:
        return HTTPException(413, f"body: {size} bytes is over the limit of {self.max_bytes} bytes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response([("body", f"{int(declared)} bytes is over the limit of "
                                                  f"{self.max_bytes} bytes")], 413)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"more than {received}")  # FastAPI passes HTTPException through
            return message

        return await self.app(scope, limited_receive, send)


def create_app(recommender: Recommender, cfg: ServeConfig) -> FastAPI:
    """The FastAPI application answering for ``recommender`` with ``cfg``'s limits (module docstring)."""
    batcher: DynamicBatcher[Query, list[tuple[str, float]]] = DynamicBatcher(
        recommender.recommend, max_batch=cfg.max_batch, max_wait_s=cfg.max_wait_ms / 1000)
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="sidrec", summary="Next-item recommendations from a generative model over semantic IDs",
                  version="1", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_body_bytes)

    @app.exception_handler(RequestProblems)
    async def _problems(_request: Request, exc: RequestProblems) -> JSONResponse:
        return problem_response(exc.problems, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            e = bad_json[0]
            where = f" at character {e['loc'][-1]}" if len(e.get("loc", ())) > 1 else ""
            reason = (e.get("ctx") or {}).get("error", "not valid JSON")
            return problem_response([("body", f"malformed JSON{where} ({reason})")], 400)
        return problem_response([(field_name(e.get("loc", ())), validation_message(e, request.url.path))
                                 for e in errors], 422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        field, _, message = detail.partition(": ")
        return problem_response([(field, message)] if message else [("request", detail)], exc.status_code)

    @app.exception_handler(Exception)
    async def _failed(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}", "errors": []},
                            status_code=500)

    def query_of(body: RecommendRequest, prefix: str = "") -> Query:
        """The body as a :class:`Query`, or :class:`RequestProblems` naming every field at fault."""
        catalogue = recommender.catalogue
        limit = min(cfg.max_topk, catalogue.n_items)
        problems = history_problems(body.history, catalogue, f"{prefix}history")
        if not 1 <= body.topk <= limit:
            problems.append((f"{prefix}topk", f"must be between 1 and {limit} (got {body.topk})"))
        if problems:
            raise RequestProblems(problems)
        return Query(tuple(body.history), body.topk, body.exclude_history)

    def answer(body: RecommendRequest, ranked: list[tuple[str, float]]) -> list[dict[str, Any]]:
        catalogue = recommender.catalogue  # items are only ever added, so it holds every item decoded
        items = []
        for item_id, score in ranked:
            row = catalogue.item(item_id) or {"item_id": item_id, "sid": ""}
            entry = {"item_id": item_id, "title": row.get("title"), "sid": row["sid"], "score": score}
            if body.explain:
                entry["why"] = catalogue.why(item_id, body.history)
            items.append(entry)
        return items

    @app.post("/recommend", response_model=RecommendResponse, response_model_exclude_none=True,
              summary="Recommend the next items for one history")
    async def recommend(body: RecommendRequest) -> dict[str, Any]:
        start = time.perf_counter()
        (ranked,) = await batcher.submit([query_of(body)])
        return {"items": answer(body, ranked), "model": recommender.model_name,
                "latency_ms": round((time.perf_counter() - start) * 1000, 3)}

    @app.post("/recommend/batch", response_model=BatchResponse, response_model_exclude_none=True,
              summary="Recommend for many users in one request")
    async def recommend_batch(body: BatchRequest) -> dict[str, Any]:
        start = time.perf_counter()
        if not 1 <= len(body.users) <= cfg.max_users:
            raise RequestProblems([("users", f"{len(body.users)} users; send 1 to {cfg.max_users} per request")])
        queries, problems = [], []
        for i, user in enumerate(body.users):
            try:
                queries.append(query_of(user, f"users[{i}]."))
            except RequestProblems as e:
                problems += e.problems
        if problems:
            raise RequestProblems(problems)
        ranked = await batcher.submit(queries)
        return {"results": [{"items": answer(user, r)} for user, r in zip(body.users, ranked)],
                "model": recommender.model_name, "latency_ms": round((time.perf_counter() - start) * 1000, 3)}

    @app.get("/items/{item_id}", summary="An item's row and SID")
    async def item(item_id: str) -> dict[str, Any]:
        row = recommender.catalogue.item(item_id)
        if row is None:
            raise RequestProblems([("item_id", f"unknown item id {item_id!r} (not in the run's catalogue)")], 404)
        return row

    @app.get("/health", summary="Liveness, the model served and batching counters")
    async def health() -> dict[str, Any]:
        import torch

        return {"status": "ok", "model": recommender.model_name, "model_dir": str(recommender.model_dir),
                "run": str(recommender.run_dir), "backend": recommender.backend, "device": recommender.device,
                "torch_threads": torch.get_num_threads(),
                "items": recommender.catalogue.n_items, "beams": recommender.beams, "max_batch": cfg.max_batch,
                "max_wait_ms": cfg.max_wait_ms, "batches": batcher.batches, "queries": batcher.queries,
                "largest_batch": batcher.largest, "decode_seconds": round(batcher.decode_seconds, 3),
                "uptime_s": round(time.time() - started, 1)}

    @app.post("/reload", summary="Re-read the run's catalogue (items added by `sidrec add-items`)")
    async def reload() -> dict[str, Any]:
        import asyncio

        start = time.perf_counter()
        try:
            before, after = await asyncio.get_running_loop().run_in_executor(None, recommender.reload_catalogue)
        except Exception as e:  # noqa: BLE001 -- the old catalogue stays in service
            log.exception("reload failed")
            raise RequestProblems([("run", f"reload failed, still serving the previous catalogue: {e}")],
                                  409) from None
        return {"items_before": before, "items": after, "added": after - before,
                "seconds": round(time.perf_counter() - start, 3)}

    return app


def serve(cfg: ServeConfig) -> None:
    """Load ``cfg.run``'s model and catalogue, then answer HTTP requests until interrupted."""
    import torch
    import uvicorn

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    recommender = Recommender.load(cfg.run, model_dir=cfg.model, backend=cfg.backend, beams=cfg.beams,
                                   device=cfg.device, dtype=cfg.dtype)
    app = create_app(recommender, cfg)
    log.info("serving %s (%s on %s, %d items) at http://%s:%d  (API docs: /docs)", recommender.model_dir,
             recommender.backend, recommender.device, recommender.catalogue.n_items, cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", access_log=cfg.access_log)
