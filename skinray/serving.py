"""Online enhancement endpoint: a Ray Serve application with a FastAPI ingress.

    serve run serve/config.yaml                 # the deployable config (serve/app.py re-exports this)
    skinray serve --model runs/demo             # the short way on one machine

Routes: ``GET /`` (a page: pick a photo, see it enhanced, download it), ``POST /v1/enhance``
(image bytes or a multipart ``file`` field in, enhanced PNG/JPEG out), ``POST /v1/batch`` and
``GET /v1/batch/{id}``, ``DELETE /v1/batch/{id}`` (archive jobs: Ray Jobs on the
cluster, submitted through its job manager, listed by ``ray job list``), ``GET /healthz``, ``GET /readyz``,
``GET /v1/model``, ``GET /openapi.json``. Every bad request is a JSON 4xx; overload is a 503
with ``Retry-After``. Inference goes through the same :class:`skinray.predict.Enhancer` as the
batch job, with concurrent requests batched.

Bounded cost per request: the body is bounded (``max_body_bytes``), the header decides the
format (only JPEG, PNG, WebP, TIFF; it must match the Content-Type) and the pixel count
(``max_pixels``, before decoding); a replica works on at most ``max_working_requests`` requests
and ``max_inflight_pixels`` pixels at once (others wait, within their deadline), and only once a
request's body has arrived (``body_timeout_s``), so slow clients do not shut out the others;
every request has a deadline (``request_timeout_s``: 503 past it) and stops between tiles once
its client has gone.
Archive jobs are off unless ``batch_roots`` names roots (:mod:`skinray.paths` is the policy).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time.

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import os
import threading
import time
import typing
from importlib import resources
from typing import Literal, Optional

import numpy as np
import ray
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from ray import serve
from ray.serve import Application
from starlette.exceptions import HTTPException as StarletteHTTPException

from skinray import archive, images
from skinray.archive_jobs import (
    JOB_TAG,
    job_client,
    job_entrypoint,
    job_view,
    new_job_id,
    valid_job_id,
)
from skinray.assess import Assessment
from skinray.assess import assess as assess_photo
from skinray.config import MAX_PIXELS, PRECISIONS, EnhanceConfig
from skinray.errors import EnhanceStopped, ImageDecodeError, SkinrayError

# Content-Type -> the Pillow formats the body may be; anything else is 415 (lists: skinray.images).
TYPE_FORMATS = images.CONTENT_TYPES
SUPPORTED_TYPES = set(TYPE_FORMATS)
ENDPOINT_FORMATS = images.ENDPOINT_FORMATS  # the README's list; BMP only in archive jobs
MEDIA = {"png": "image/png", "jpeg": "image/jpeg"}
RETRY_AFTER_S = 1


class AppArgs(BaseModel):
    """Typed arguments of the application (the ``args`` of serve/config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "bundled"  # checkpoint URI: a run folder (its best model), a checkpoint folder (local or
    # s3://), or bundled: the model shipped with skinray
    max_body_bytes: int = Field(20 * 2**20, ge=1)
    # Largest image a request may declare: 25 Mpx (6000x4000 DSLR, 12-24 Mpx phones, any
    # dermatoscope). At ~2.3-2.9 bytes/pixel to decode and ~2x the RGB image while enhancing,
    # one such request peaks near 200 MB; see README "Online endpoint" for the measurement.
    max_pixels: int = Field(25_000_000, ge=1)
    # Pixels a replica decodes and enhances at once (None: 2 x max_pixels); requests beyond it
    # wait for room without holding a thread, until their deadline.
    max_inflight_pixels: Optional[int] = Field(None, ge=1)
    # Requests a replica works on at once (decode, enhance, assess, encode), once their body has
    # arrived; up to max_waiting_requests more wait for room (pixels or a place), and beyond them a
    # request gets 503 with Retry-After at once. Serve's max_ongoing_requests (DEPLOYMENT) is far
    # higher: a request whose body is still arriving costs a coroutine, not a place here.
    max_working_requests: int = Field(16, ge=1)
    max_waiting_requests: int = Field(32, ge=0)
    # A request still unanswered after this long gets 503 (and its computation stops between tiles).
    request_timeout_s: float = Field(60.0, gt=0)
    # Seconds a request's body may take to arrive, from when the request reaches the replica:
    # past it 408 (a client sending one byte every 5 s held a slot for ever). While it arrives a
    # request holds no working place (max_working_requests) and no bytes it has not sent. The
    # headers' own timing is the Serve proxy's (uvicorn), not bounded here.
    body_timeout_s: float = Field(30.0, gt=0)
    # Body bytes a replica holds at once (arrived, and not yet answered); None: 4 x
    # max_body_bytes. Counted as they arrive, so a slow client declaring a large body holds only
    # what it sent; a body whose declared length does not fit in what is free now, or that
    # outgrows it, gets 503 with Retry-After at once, next to the pixel budget.
    max_inflight_bytes: Optional[int] = Field(None, ge=1)
    # Structure limits checked on the bytes before any decoder runs (422 naming the limit):
    # skinray.image_limits.DecodeLimits, whose defaults archive jobs use too.
    max_jpeg_scans: int = Field(images.DecodeLimits.max_jpeg_scans, ge=1)
    max_tiff_blocks: int = Field(images.DecodeLimits.max_tiff_blocks, ge=1)
    max_tiff_ifds: int = Field(images.DecodeLimits.max_tiff_ifds, ge=1)
    max_png_chunks: int = Field(images.DecodeLimits.max_png_chunks, ge=3)
    max_png_ancillary_bytes: int = Field(images.DecodeLimits.max_png_ancillary_bytes, ge=0)
    max_png_ratio: int = Field(images.DecodeLimits.max_png_ratio, ge=1)
    max_frames: int = Field(images.DecodeLimits.max_frames, ge=1)
    # Requests per model call. None: 8 on a GPU, 1 on a CPU. On a CPU the Enhancer runs each
    # photo on its own (stacking measured slower: poster 0.79x unbatched, benchmarks/
    # serve_latency.py, 2 cores), so 8 there only gathers requests into one worker call: with the
    # bundled model, 16 clients, 1-CPU replica, 1.33x and 1.15x unbatched req/s in two runs on a
    # loaded machine, but 1.02x (19.2 vs 18.9 req/s, p95 974 vs 972 ms) on the idle machine, with
    # one request alone 70 vs 66 ms: kept at 1 on a CPU.
    max_batch_size: Optional[int] = None
    batch_wait_timeout_s: float = 0.005
    # Inference arithmetic: auto = bf16 (fp16 without bf16) with channels_last on a GPU replica,
    # fp32 on a CPU one; bf16 also runs on a CPU, fp16 needs a GPU (skinray.predict.Enhancer).
    precision: Literal[PRECISIONS] = "auto"
    api_key_env: str = "SKINRAY_API_KEY"  # environment variable holding the API key, if any
    api_key_file: Optional[str] = None  # or a file holding it
    s3_endpoint: Optional[str] = None
    # POST /v1/batch is off unless batch_roots names roots: input and output must then resolve
    # (symlinks included) under one of them (403 otherwise). overwrite: true is allowed only for
    # outputs under batch_writable_roots (each inside a batch root), and even there replaces only
    # files an earlier skinray run wrote.
    batch_roots: Optional[list[str]] = None
    batch_writable_roots: list[str] = []

    def decode_limits(self) -> images.DecodeLimits:
        return images.DecodeLimits(**{name: getattr(self, name) for name in images.DecodeLimits.names()})

    def roots(self):
        from skinray import paths

        return paths.Roots(tuple(self.batch_roots or ()), tuple(self.batch_writable_roots))


# The archive job's options are declared once, in EnhanceConfig; the body of POST /v1/batch is
# built from its fields, with the endpoint's policy on top: fields a request may not set, and
# bounds tighter than the job's own checks (EnhanceConfig.validate runs on every request too).
BODY_EXCLUDED = {
    "model": "every job runs the endpoint's own model",
    "follow_symlinks": "the operator's choice: a link could lead out of the batch roots",
}
BODY_BOUNDS = {
    "input": {"min_length": 1}, "output": {"min_length": 1},
    "workers": {"ge": 1, "le": 64}, "batch_size": {"ge": 1, "le": 256},
    "max_pixels": {"ge": 1, "le": MAX_PIXELS},  # never above the archive job's default
    "resource_wait_s": {"gt": 0, "le": 3600},  # then FAILED if the cluster lacks the CPUs/GPUs
}


def _batch_request_model() -> type[BaseModel]:
    hints = typing.get_type_hints(EnhanceConfig)
    body = {}
    for f in dataclasses.fields(EnhanceConfig):
        if f.name not in BODY_EXCLUDED:
            default = ... if f.name in ("input", "output") else f.default
            body[f.name] = (hints[f.name], Field(default, description=f.metadata["help"],
                                                 **BODY_BOUNDS.get(f.name, {})))
    return create_model("BatchRequest", __config__=ConfigDict(extra="forbid"),
                        __doc__="Body of POST /v1/batch: the archive job's options (EnhanceConfig).", **body)


BatchRequest = _batch_request_model()


# No public schema or docs (GET /openapi.json is a route behind the key), and no trailing-slash
# redirects: Starlette builds those from the Host header, before any route checks the key.
api = FastAPI(title="skinray", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)


@api.exception_handler(StarletteHTTPException)
async def _json_errors(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every error, unknown routes included, as {"error": message, "status": code}."""
    return JSONResponse({"error": exc.detail, "status": exc.status_code}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


@api.exception_handler(Exception)
async def _json_internal_errors(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen is a JSON 500 too, never Starlette's plain text."""
    return JSONResponse({"error": f"internal error ({type(exc).__name__})", "status": 500}, status_code=500)


@api.exception_handler(RequestValidationError)
async def _json_validation_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": f"invalid request: {problems}", "status": 422}, status_code=422)


HEADER_MAX_CHARS = 200  # longest X-Skinray-* / X-Model-Id value; longer ones end in '...'


def header_value(text: str, limit: int = HEADER_MAX_CHARS) -> str:
    """A response header value made only from printable ASCII: other characters (controls,
    non-ASCII, from an ICC profile's description) become '?', whitespace runs one space, and a
    value over ``limit`` characters is cut, ending in '...'."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in " ".join(str(text).split()))
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def _error(status: int, message: str, headers: Optional[dict] = None) -> HTTPException:
    return HTTPException(status_code=status, detail=message, headers=headers)


def read_api_key(args: AppArgs) -> Optional[str]:
    """The API key from ``args.api_key_file`` or the environment variable; None when neither
    is set. An empty or unreadable key file is an error, never an open endpoint."""
    if args.api_key_file:
        try:
            with open(args.api_key_file) as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise SkinrayError(f"api_key_file {args.api_key_file}: {exc.strerror}") from None
        if not key:
            raise SkinrayError(f"api_key_file {args.api_key_file} is empty: put the key in it, or "
                               f"leave api_key_file unset to run without a key")
        return key
    return os.environ.get(args.api_key_env, "").strip() or None


@functools.lru_cache(maxsize=1)
def _page() -> str:
    return resources.files("skinray").joinpath("web/index.html").read_text(encoding="utf-8")


class BusyError(Exception):
    """The replica's working places and waiting places are all taken: answer 503 at once."""


class WorkAdmission:
    """At most ``requests`` requests working at once in one replica, on at most ``limit`` decoded
    pixels together. Up to ``waiting`` more wait (in the event loop, holding no thread and no
    decoded pixels) for room until their deadline; beyond them :meth:`acquire` raises
    :class:`BusyError` at once. Only requests whose body has arrived come here."""

    def __init__(self, limit: int, requests: int, waiting: int):
        self.limit, self.used = limit, 0
        self.requests, self.working = requests, 0
        self.max_waiting, self.waiting = waiting, 0
        self._changed: Optional[asyncio.Condition] = None  # made in the replica's event loop

    async def acquire(self, pixels: int, timeout: float) -> None:
        """Take a working place and ``pixels``; asyncio.TimeoutError past ``timeout`` seconds."""
        if self._changed is None:
            self._changed = asyncio.Condition()

        def fits() -> bool:
            return self.working < self.requests and self.used + pixels <= self.limit

        async with self._changed:
            if not fits():
                if self.waiting >= self.max_waiting:
                    raise BusyError(f"{self.working} requests working and {self.waiting} waiting")
                self.waiting += 1
                try:
                    await asyncio.wait_for(self._changed.wait_for(fits), max(timeout, 0.001))
                finally:
                    self.waiting -= 1
            self.used += pixels
            self.working += 1

    async def release(self, pixels: int) -> None:
        async with self._changed:
            self.used -= pixels
            self.working -= 1
            self._changed.notify_all()


class ByteBudget:
    """At most ``limit`` body bytes held in one replica, counted as they arrive. Bytes are already
    on the wire, so a request over the budget is refused at once (503 with Retry-After) rather
    than queued."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def fits(self, n: int) -> bool:
        """Whether ``n`` more bytes would fit now (nothing is taken)."""
        return self.used + n <= self.limit

    def give(self, n: int) -> None:
        self.used -= n


# --- the deployment -------------------------------------------------------------------------

# The Serve deployment options, declared here once: the decorator below applies them, so
# `skinray serve` and `serve run serve/config.yaml` (which sets none) run with them. A Serve
# config's `deployments:` entry replaces the code's value key by key (a whole autoscaling_config
# or ray_actor_options, not fields of it): cluster/k8s/rayservice.yaml sets GPU_DEPLOYMENT's
# differences, as a config file cannot import them; tests/test_deployment_options.py holds both
# files to these two.
DEPLOYMENT = {
    # Serve hands a request to a replica on its headers and the replica reads the body, so a slot
    # is held while the bytes arrive (up to body_timeout_s). Slots are therefore many and cheap (a
    # coroutine each); the work is bounded by the replica's own admission (AppArgs
    # max_working_requests and max_waiting_requests, max_inflight_pixels, max_inflight_bytes).
    # 16 slots let 16 slow clients shut out everyone else; 256 take 200 slow clients and leave
    # room for the work (issue 23, docs/endpoint.md).
    "max_ongoing_requests": 256,
    "max_queued_requests": 32,  # beyond that: 503 with Retry-After, never a hang
    "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
    # Ongoing requests include bodies still arriving: slow clients scale the app up, at most to
    # max_replicas (each replica then has 256 more slots), and down again once they are answered.
    "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
    "ray_actor_options": {"num_cpus": 1},
    # A replica being scaled down or replaced finishes its requests: Ray's default (20 s)
    # killed those past it, while a request may run for request_timeout_s (60 s by default).
    "graceful_shutdown_timeout_s": AppArgs.model_fields["request_timeout_s"].default + 5,
}
# One GPU per replica, on the GPU worker group of cluster/k8s/rayservice.yaml (8 pods, 8 CPUs each).
GPU_DEPLOYMENT = {
    **DEPLOYMENT,
    "max_queued_requests": 64,
    "autoscaling_config": {**DEPLOYMENT["autoscaling_config"], "max_replicas": 8},
    "ray_actor_options": {"num_cpus": 2, "num_gpus": 1},
}


@serve.deployment(**DEPLOYMENT)
@serve.ingress(api)
class EnhanceService:
    def __init__(self, args: dict):
        from skinray import storage
        from skinray.predict import Enhancer

        self.args = AppArgs(**args)
        self.enhancer = Enhancer.from_checkpoint(
            self.args.model, s3=storage.S3Options.from_env(self.args.s3_endpoint), precision=self.args.precision)
        if self.enhancer.device.type == "cpu":
            import torch

            from skinray.predict import cpu_threads

            # The replica's CPUs (num_cpus; Ray sets OMP_NUM_THREADS to it) work on different
            # tiles of a photo, one torch thread each: the archive job's bytes, for any num_cpus.
            self.enhancer.threads = cpu_threads()
            torch.set_num_threads(1)
        self._api_key = read_api_key(self.args)
        if self.args.batch_roots:
            from skinray import paths

            paths.check_roots_config(self.args.roots())  # a bad root stops the deployment here
        inflight = self.args.max_inflight_pixels or 2 * self.args.max_pixels
        if inflight < self.args.max_pixels:
            raise SkinrayError(f"max_inflight_pixels ({inflight}) must be at least max_pixels "
                               f"({self.args.max_pixels}): a maximal image would never fit")
        self._budget = WorkAdmission(inflight, self.args.max_working_requests, self.args.max_waiting_requests)
        byte_limit = self.args.max_inflight_bytes or 4 * self.args.max_body_bytes
        if byte_limit < self.args.max_body_bytes:
            raise SkinrayError(f"max_inflight_bytes ({byte_limit}) must be at least max_body_bytes "
                               f"({self.args.max_body_bytes}): a maximal body would never fit")
        self._bytes = ByteBudget(byte_limit)
        self._limits = self.args.decode_limits()
        batch_size = self.args.max_batch_size or (8 if self.enhancer.device.type == "cuda" else 1)
        self._batch_size = batch_size
        self.enhance_batch.set_max_batch_size(batch_size)
        self.enhance_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self._app = serve.get_replica_context().app_name  # tags this endpoint's archive jobs
        self._job_client = None

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        scheme, _, supplied = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":  # RFC 7235: the scheme is case-insensitive
            supplied = ""
        if not hmac.compare_digest(supplied.strip().encode(), self._api_key.encode()):
            raise _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                         {"WWW-Authenticate": "Bearer"})

    @api.get("/", response_class=HTMLResponse)
    async def page(self) -> HTMLResponse:
        return HTMLResponse(_page())  # static; the API calls it makes carry the key

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "alive"}

    @api.get("/readyz")
    async def readyz(self, request: Request) -> dict:
        self._authorize(request)
        return {"status": "ready", "model_id": self.enhancer.model_id}

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> JSONResponse:
        self._authorize(request)  # the schema maps the API: behind the key like the API itself
        return JSONResponse(api.openapi())

    @api.get("/v1/model")
    async def model(self, request: Request) -> dict:
        self._authorize(request)
        loaded = self.enhancer.loaded
        return {"model_id": self.enhancer.model_id, "uri": loaded.uri, "config": loaded.config.to_dict(),
                "metrics": loaded.metrics, "device": str(self.enhancer.device),
                "precision": self.enhancer.precision}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def enhance_batch(self, batch: list[np.ndarray]) -> list[tuple]:
        # One call for every request that arrived together; the Enhancer groups equal sizes.
        # (output, correction) per photo, from one pass of the model.
        return await asyncio.get_running_loop().run_in_executor(None, self.enhancer.enhance_corrected, batch)

    def _hold(self, request: Request, n: int) -> None:
        """Count ``n`` more body bytes of this request against the replica's byte budget."""
        if n <= 0:
            return
        if not self._bytes.take(n):
            raise self._busy(f"{self._bytes.used} body bytes of max_inflight_bytes={self._bytes.limit}")
        request.state.held_bytes = getattr(request.state, "held_bytes", 0) + n

    def _release(self, request: Request) -> None:
        self._bytes.give(getattr(request.state, "held_bytes", 0))
        request.state.held_bytes = 0

    def _busy(self, what: str) -> HTTPException:
        return _error(503, f"this replica holds {what}; retry later", {"Retry-After": str(RETRY_AFTER_S)})

    async def _read_body(self, request: Request, arrived: float, limit: Optional[int] = None) -> bytes:
        """The body, bounded in size (413), in time (``body_timeout_s`` from ``arrived``, the
        time.monotonic() when the request reached the replica: 408) and counted against the byte
        budget as it arrives (503 at once when its declared length does not fit in what is free)."""
        from starlette.requests import ClientDisconnect

        limit = limit or self.args.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _error(413, f"body of {declared} bytes exceeds the limit of {limit}")
        if declared.isdigit() and not self._bytes.fits(int(declared)):
            raise self._busy(f"{self._bytes.used} body bytes of max_inflight_bytes={self._bytes.limit}")
        body, deadline = bytearray(), arrived + self.args.body_timeout_s
        chunks = request.stream().__aiter__()  # also bounds chunked bodies without Content-Length
        while True:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return bytes(body)
            except TimeoutError:
                raise _error(408, f"the body did not arrive within body_timeout_s={self.args.body_timeout_s:g}s "
                                  f"({len(body)} bytes came)") from None
            except ClientDisconnect:
                raise _error(400, "the client went away while sending the body") from None
            body.extend(chunk)
            if len(body) > limit:
                raise _error(413, f"body exceeds the limit of {limit} bytes")
            self._hold(request, len(body) - getattr(request.state, "held_bytes", 0))

    @staticmethod
    def _check_type(content_type: str, where: str) -> None:
        if content_type and content_type not in SUPPORTED_TYPES and content_type != "application/octet-stream":
            raise _error(415, f"unsupported {where} {content_type!r}: send one of "
                              f"{', '.join(t for t in TYPE_FORMATS if t != 'image/jpg')}")

    async def _image_bytes(self, request: Request, arrived: float) -> tuple[str, bytes]:
        """(declared media type, image bytes) from a raw body or a multipart form's ``file`` field."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "multipart/form-data":
            self._check_type(content_type, "Content-Type")
            return content_type, await self._read_body(request, arrived)
        body = await self._read_body(request, arrived)  # bounded before any parsing

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=20)
        except Exception as exc:  # malformed multipart
            raise _error(400, f"cannot parse the multipart form: {exc}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _error(400, "multipart form has no file field named 'file'")
        file_type = (upload.content_type or "").split(";")[0].strip().lower()
        self._check_type(file_type, "file type")
        return file_type, await upload.read()

    @staticmethod
    def _header(data: bytes, content_type: str, max_pixels: int,
                limits: images.DecodeLimits = images.DEFAULT_LIMITS) -> tuple[int, int, str]:
        """(width, height, Pillow format) from the header alone, or the right 4xx: 413 for too
        many pixels (however many are declared), 422 for a structure over a limit (scans,
        strips, chunks, frames), 415 for a format outside the README's list or other than the
        Content-Type says, 400 for bytes that are no image."""
        try:
            width, height, fmt = images.probe(data, max_pixels, ENDPOINT_FORMATS, limits)
        except images.ImageLimitError as exc:
            raise _error(422, f"cannot use this image: {exc}") from None
        except images.ImageTooLargeError as exc:
            raise _error(413, f"cannot use this image: {exc}") from None
        except images.UnsupportedFormatError as exc:
            raise _error(415, f"cannot use this image: {exc}") from None
        except ImageDecodeError as exc:
            raise _error(400, f"cannot use this image: {exc}") from None
        allowed = TYPE_FORMATS.get(content_type)
        if allowed and fmt not in allowed:
            raise _error(415, f"the body is a {fmt} image but its Content-Type says {content_type}: "
                              f"send the type that matches the bytes")
        return width, height, "JPEG" if fmt == "MPO" else fmt

    async def _in_thread(self, stop: threading.Event, fn, *args):
        """Run ``fn`` on the executor. If this request is cancelled (its client went away), tell
        the work to stop (``stop``) and wait for the thread to let go before re-raising, so the
        request's pixels stay counted until they are really freed."""
        future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(future), 60)
            except BaseException:  # noqa: BLE001 - the work's own outcome no longer matters
                pass
            raise

    @staticmethod
    def _output_format(format: Optional[str], accept: str) -> str:
        """``png`` or ``jpeg``: the ``format`` query parameter, else the Accept header; 422 otherwise."""
        fmt = (format or "").lower() or ("jpeg" if "image/jpeg" in accept else "png")
        if fmt == "jpg":
            fmt = "jpeg"
        if fmt not in MEDIA:
            raise _error(422, f"unknown format {format!r}: use png or jpeg")
        return fmt

    def _too_slow(self) -> HTTPException:
        return _error(503, f"the request did not finish within request_timeout_s="
                           f"{self.args.request_timeout_s:g}s; retry later or send a smaller image",
                      {"Retry-After": str(RETRY_AFTER_S)})

    @staticmethod
    @contextlib.contextmanager
    def _decode_errors():
        """413, 422 or 400 for what the header alone did not show."""
        try:
            yield
        except images.ImageLimitError as exc:
            raise _error(422, f"cannot use this image: {exc}") from None
        except images.ImageTooLargeError as exc:
            raise _error(413, f"cannot use this image: {exc}") from None
        except ImageDecodeError as exc:
            raise _error(400, f"cannot use this image: {exc}") from None

    def _decoded(self, body: list, image_format: str, should_stop) -> images.Decoded:
        """Decode the bytes in ``body`` (a one-item list, emptied so that the bytes can go once
        decoded); a JPEG or PNG stops part way once the request is over, any image after."""
        decoded = images.decode_photo(body.pop(), self.args.max_pixels, (image_format,), self._limits, should_stop)
        if should_stop():
            raise EnhanceStopped("deadline")
        return decoded

    def _finished(self, rgb: np.ndarray, enhanced: np.ndarray, fix, fmt: Optional[str],
                  exif: Optional[bytes]) -> tuple[Assessment, Optional[bytes]]:
        """(the triage, skinray/assess.py, from the one Enhancer pass's output and correction;
        the encoded output, None for /v1/assess)."""
        triage = assess_photo(rgb, enhanced, fix)
        return triage, None if fmt is None else images.encode(enhanced, fmt, 95, exif)

    def _whole_request(self, body: list, image_format: str, fmt: Optional[str], should_stop):
        """One request's work on one thread, without batching: decode, enhance (stoppable
        between strips or tiles), assess, encode; each step drops what it no longer needs."""
        decoded = self._decoded(body, image_format, should_stop)
        rgb, exif, colour = decoded.rgb, decoded.exif, decoded.colour  # sRGB; EXIF upright
        del decoded
        ((enhanced, fix),) = self.enhancer.enhance_corrected([rgb], should_stop)
        return (colour, *self._finished(rgb, enhanced, fix, fmt, exif))

    async def _batched_request(self, stop: threading.Event, body: list, image_format: str, fmt: Optional[str],
                               should_stop):
        """With request batching: decode on the executor, enhance in a batch with other
        requests (``enhance_batch``), then assess and encode on the executor."""
        decoded = await self._in_thread(stop, self._decoded, body, image_format, should_stop)
        rgb, exif, colour = decoded.rgb, decoded.exif, decoded.colour
        del decoded
        enhanced, fix = await self.enhance_batch(rgb)
        return (colour, *await self._in_thread(stop, self._finished, rgb, enhanced, fix, fmt, exif))

    @api.post("/v1/enhance")
    async def enhance(self, request: Request, format: Optional[str] = None) -> Response:
        try:
            return await self._enhance(request, format)
        finally:
            self._release(request)  # the body's bytes leave the byte budget

    @api.post("/v1/assess")
    async def assess(self, request: Request) -> Response:
        """The photo's assessment as JSON (no image): /v1/enhance's limits, codes and key."""
        try:
            return await self._enhance(request, None, assess_only=True)
        finally:
            self._release(request)

    def _reply(self, body: Optional[bytes], fmt: str, colour: str, triage: Assessment, marks: list) -> Response:
        """The answer; ``marks``: (name, time.perf_counter()) from the request's start: Server-Timing
        gives the total first, then each step's share (``body``: reading it, ``wait``: for a working
        place and room in the pixel budget, ``work``: decode, enhance, assess, encode)."""
        now = time.perf_counter()
        steps = ", ".join(f"{name};dur={(t - t0) * 1000:.1f}" for (_, t0), (name, t) in zip(marks, marks[1:]))
        headers = {"X-Model-Id": header_value(self.enhancer.model_id), "X-Skinray-Colour": header_value(colour),
                   "X-Skinray-Verdict": header_value(triage.verdict_header()),
                   "X-Skinray-Change": header_value(triage.change_header()),
                   "Server-Timing": f"total;dur={(now - marks[0][1]) * 1000:.1f}, {steps}"}
        if body is None:  # /v1/assess
            return JSONResponse({"model_id": self.enhancer.model_id, "colour": colour, **triage.as_dict()},
                                headers=headers)
        return Response(content=body, media_type=MEDIA[fmt], headers=headers)

    async def _enhance(self, request: Request, format: Optional[str], assess_only: bool = False) -> Response:
        marks, arrived = [("start", time.perf_counter())], time.monotonic()
        deadline = arrived + self.args.request_timeout_s
        self._authorize(request)
        fmt = "png" if assess_only else self._output_format(format, request.headers.get("accept", ""))
        content_type, data = await self._image_bytes(request, arrived)
        marks.append(("body", time.perf_counter()))
        if not data:
            raise _error(400, "empty body: send the image bytes")
        width, height, image_format = self._header(data, content_type, self.args.max_pixels, self._limits)
        pixels = width * height
        try:  # a place to work: only now, with the whole body here
            await self._budget.acquire(pixels, deadline - time.monotonic())
        except asyncio.TimeoutError:
            raise self._too_slow() from None
        except BusyError as exc:
            raise self._busy(f"{exc} (max_working_requests={self.args.max_working_requests}, "
                             f"max_waiting_requests={self.args.max_waiting_requests})") from None
        marks.append(("wait", time.perf_counter()))
        stop = threading.Event()

        def should_stop() -> bool:
            return stop.is_set() or time.monotonic() > deadline

        body_box, out_fmt = [data], None if assess_only else fmt
        del data  # in body_box: gone once decoded, so a request holds one copy of its pixels
        try:
            with self._decode_errors():
                if self._batch_size > 1 and max(width, height) <= self.enhancer.tile:
                    colour, triage, body = await self._batched_request(stop, body_box, image_format, out_fmt,
                                                                       should_stop)
                else:  # one hop to the executor for the whole request (tiled photos stop between tiles)
                    colour, triage, body = await self._in_thread(stop, self._whole_request, body_box, image_format,
                                                                 out_fmt, should_stop)
        except EnhanceStopped:
            raise self._too_slow() from None
        finally:
            await self._budget.release(pixels)
        marks.append(("work", time.perf_counter()))
        return self._reply(body, fmt, colour, triage, marks)

    @api.post("/v1/batch", status_code=202)
    async def batch_submit(self, request: Request) -> JSONResponse:
        arrived = time.monotonic()
        self._authorize(request)  # before reading anything
        try:
            body = await self._read_body(request, arrived, limit=64 * 1024)
        finally:
            self._release(request)
        try:
            job = BatchRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
            raise _error(422, f"invalid archive job: {problems}") from None
        from skinray import paths

        if not self.args.batch_roots:
            raise _error(403, "archive jobs are turned off on this endpoint: start it with --batch-roots "
                              "(args.batch_roots) naming the folders or bucket prefixes jobs may use")
        roots = self.args.roots()
        cfg = EnhanceConfig(model=self.enhancer.loaded.uri, **job.model_dump())
        try:
            cfg.validate()
            _, dst = paths.check_job(cfg.input, cfg.output, roots, cfg.overwrite)  # the job checks again
        except paths.OverlapError as exc:
            raise _error(422, str(exc)) from None
        except paths.PathPolicyError as exc:
            raise _error(403, str(exc)) from None
        except SkinrayError as exc:
            raise _error(422, str(exc)) from None
        client = await self._jobs()
        await self._refuse_overlapping(client, dst)
        job_id = new_job_id()
        # resolved_output: where GET reads the job's progress (the output as resolved now)
        metadata = {"skinray": JOB_TAG, "app": self._app, "input": cfg.input, "output": cfg.output,
                    "resolved_output": dst.uri}
        entrypoint = job_entrypoint(cfg, roots, self.args.s3_endpoint)
        deadline = time.monotonic() + 60
        while True:  # a cluster just started may not have its job agent yet
            try:
                await asyncio.to_thread(client.submit_job, entrypoint=entrypoint, submission_id=job_id,
                                        metadata=metadata, runtime_env={"env_vars": {archive.JOB_ID_ENV: job_id}})
                break
            except RuntimeError as exc:
                if "try again later" not in str(exc) or time.monotonic() > deadline:
                    raise _error(503, f"the cluster's job manager did not take the job: {exc}",
                                 {"Retry-After": "10"}) from None
                await asyncio.sleep(1)
        info = await asyncio.to_thread(client.get_job_info, job_id)
        return JSONResponse(await asyncio.to_thread(job_view, client, info, self.args.s3_endpoint),
                            status_code=202, headers={"Location": f"/v1/batch/{job_id}"})

    async def _jobs(self):
        if self._job_client is None:
            try:
                self._job_client = await asyncio.to_thread(job_client)
            except Exception as exc:  # noqa: BLE001 - unreachable dashboard, auth
                raise _error(503, f"the cluster's job manager is unreachable: {exc}",
                             {"Retry-After": "10"}) from None
        return self._job_client

    def _app_jobs(self, infos) -> list:
        return [info for info in infos if (info.metadata or {}).get("skinray") == JOB_TAG
                and (info.metadata or {}).get("app") == self._app]

    async def _refuse_overlapping(self, client, dst) -> None:
        """409 if a job of this endpoint that has not ended writes to, into or around ``dst``:
        two jobs on one output would replace each other's outputs and report."""
        from skinray import paths

        for info in self._app_jobs(await asyncio.to_thread(client.list_jobs)):
            other = (info.metadata or {}).get("resolved_output")
            if other and not info.status.is_terminal() and paths.overlapping(paths.parse(other), dst):
                raise _error(409, f"archive job {info.submission_id} ({info.status.value}) writes to "
                                  f"{(info.metadata or {}).get('output')!r}, which overlaps this output: wait for "
                                  f"it to end or choose another output")

    async def _own_job(self, job_id: str):
        """(client, JobInfo) of one of this endpoint's jobs, else 404 (an id of another shape
        never reaches the job manager; one that does is quoted on its way)."""
        from urllib.parse import quote

        if not valid_job_id(job_id):
            raise _error(404, f"no archive job {job_id[:100]!r}: ids look like skinray-batch-<16 hex digits>")
        client = await self._jobs()
        try:
            info = await asyncio.to_thread(client.get_job_info, quote(job_id, safe=""))
        except RuntimeError:  # Ray's 404 for an unknown submission id
            info = None
        meta = (info.metadata or {}) if info is not None else {}
        if meta.get("skinray") != JOB_TAG or meta.get("app") != self._app:
            raise _error(404, f"no archive job {job_id!r}")
        return client, info

    @api.get("/v1/batch/{job_id}")
    async def batch_status(self, request: Request, job_id: str) -> dict:
        self._authorize(request)
        client, info = await self._own_job(job_id)
        return await asyncio.to_thread(job_view, client, info, self.args.s3_endpoint)

    @api.delete("/v1/batch/{job_id}", status_code=202)
    async def batch_stop(self, request: Request, job_id: str) -> JSONResponse:
        self._authorize(request)
        client, info = await self._own_job(job_id)
        if info.status.is_terminal():
            raise _error(409, f"archive job {job_id!r} already ended ({info.status.value})")
        await asyncio.to_thread(client.stop_job, info.submission_id)
        info = await asyncio.to_thread(client.get_job_info, info.submission_id)
        return JSONResponse(await asyncio.to_thread(job_view, client, info, self.args.s3_endpoint),
                            status_code=202)

    @api.get("/v1/batch")
    async def batch_list(self, request: Request) -> dict:
        self._authorize(request)
        client = await self._jobs()
        jobs = self._app_jobs(await asyncio.to_thread(client.list_jobs))
        jobs.sort(key=lambda info: info.start_time or 0)
        return {"jobs": [await asyncio.to_thread(job_view, client, info, self.args.s3_endpoint) for info in jobs]}


def build(args: AppArgs, gpu: bool = False) -> Application:
    """Typed application builder for `serve run serve/config.yaml` / `serve deploy`; ``gpu``:
    replicas of GPU_DEPLOYMENT (one GPU each; Ray hides the GPUs from replicas that ask for none)."""
    return (EnhanceService.options(**GPU_DEPLOYMENT) if gpu else EnhanceService).bind(args.model_dump())


def serve_forever(args: AppArgs, host: str, port: int, ray_address: Optional[str] = None) -> None:
    """`skinray serve`: start Serve on host:port (local Ray unless an address is given) and block
    until Ctrl-C or SIGTERM, then remove the application."""
    import signal

    from skinray.runtime import init_ray, local_dashboard

    def _stop(signum, frame):  # SIGTERM (systemd, Kubernetes, kill) stops like Ctrl-C
        raise KeyboardInterrupt

    init_ray(ray_address)
    try:
        serve.start(http_options={"host": host, "port": port})
        gpu = ray.cluster_resources().get("GPU", 0) >= 1
        serve.run(build(args, gpu), name="skinray", route_prefix="/", blocking=False)
        signal.signal(signal.SIGTERM, _stop)  # after Ray's start-up, which installs its own
        print(f"[skinray] serving {args.model} on http://{host}:{port}/ ({'one GPU' if gpu else 'CPU'} per replica; "
              f"Ctrl-C stops)", flush=True)
        if local_dashboard():  # the local Ray that init_ray started
            print(f"[skinray] Ray dashboard and its Jobs API (the archive jobs): {local_dashboard()}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("[skinray] stopping the endpoint", flush=True)
        if ray_address or os.environ.get("RAY_ADDRESS"):
            serve.delete("skinray")  # a shared cluster: leave its other Serve apps alone
        else:
            serve.shutdown()
