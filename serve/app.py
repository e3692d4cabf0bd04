"""Online enhancement endpoint: a Ray Serve application with a FastAPI ingress.

    serve run serve/config.yaml            # or: skinray serve --model runs/poster

Routes: POST /v1/enhance (image bytes in, enhanced PNG/JPEG out), GET /healthz, GET /readyz,
GET /v1/model. Every bad request is a JSON 4xx; inference goes through the same
:class:`skinray.predict.Enhancer` as the batch job, with concurrent requests batched.
"""


import asyncio
import hmac
import os
import time
from typing import Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from ray import serve
from ray.serve import Application
from starlette.exceptions import HTTPException as StarletteHTTPException

from skinray import images
from skinray.errors import ImageDecodeError

SUPPORTED_TYPES = {"image/jpeg", "image/jpg", "image/png", "image/webp", "image/tiff"}
MEDIA = {"png": "image/png", "jpeg": "image/jpeg"}


class AppArgs(BaseModel):
    """Typed arguments of the application (the `args` of serve/config.yaml)."""

    model: str  # checkpoint URI: a run folder (its best model) or a checkpoint folder, local or s3://
    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 50_000_000
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.005
    api_key_env: str = "SKINRAY_API_KEY"  # environment variable holding the API key, if any
    api_key_file: Optional[str] = None  # or a file holding it
    s3_endpoint: Optional[str] = None


api = FastAPI(title="skinray", docs_url=None, redoc_url=None)


@api.exception_handler(StarletteHTTPException)
async def _json_errors(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every error, unknown routes included, as {"error": message, "status": code}."""
    return JSONResponse({"error": exc.detail, "status": exc.status_code}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


@api.exception_handler(RequestValidationError)
async def _json_validation_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {exc.errors()}", "status": 422}, status_code=422)


def _error(status: int, message: str, headers: dict | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=message, headers=headers)


@serve.deployment(
    max_ongoing_requests=16,
    max_queued_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
    ray_actor_options={"num_cpus": 1},
)
@serve.ingress(api)
class EnhanceService:
    def __init__(self, args: dict):
        from skinray import storage
        from skinray.predict import Enhancer

        self.args = AppArgs(**args)
        self.enhancer = Enhancer.from_checkpoint(
            self.args.model, s3=storage.S3Options.from_env(self.args.s3_endpoint))
        key = os.environ.get(self.args.api_key_env, "")
        if self.args.api_key_file:
            with open(self.args.api_key_file) as handle:
                key = handle.read().strip()
        self._api_key = key or None
        self.enhance_batch.set_max_batch_size(self.args.max_batch_size)
        self.enhance_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        supplied = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(supplied.encode(), self._api_key.encode()):
            raise _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                         {"WWW-Authenticate": "Bearer"})

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "alive"}

    @api.get("/readyz")
    async def readyz(self, request: Request) -> dict:
        self._authorize(request)
        return {"status": "ready", "model_id": self.enhancer.model_id}

    @api.get("/v1/model")
    async def model(self, request: Request) -> dict:
        self._authorize(request)
        loaded = self.enhancer.loaded
        return {"model_id": self.enhancer.model_id, "uri": loaded.uri, "config": loaded.config.to_dict(),
                "metrics": loaded.metrics}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def enhance_batch(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        # One call for every request that arrived together; the Enhancer groups equal sizes.
        return await asyncio.get_running_loop().run_in_executor(None, self.enhancer.enhance_batch, batch)

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.args.max_body_bytes:
            raise _error(413, f"body of {declared} bytes exceeds the limit of {self.args.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():  # also bounds chunked bodies without Content-Length
            body.extend(chunk)
            if len(body) > self.args.max_body_bytes:
                raise _error(413, f"body exceeds the limit of {self.args.max_body_bytes} bytes")
        return bytes(body)

    @api.post("/v1/enhance")
    async def enhance(self, request: Request, format: Optional[str] = None) -> Response:
        started = time.perf_counter()
        self._authorize(request)
        fmt = (format or "").lower() or ("jpeg" if "image/jpeg" in request.headers.get("accept", "") else "png")
        if fmt == "jpg":
            fmt = "jpeg"
        if fmt not in MEDIA:
            raise _error(422, f"unknown format {format!r}: use png or jpeg")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in SUPPORTED_TYPES and content_type != "application/octet-stream":
            raise _error(415, f"unsupported Content-Type {content_type!r}: send image/jpeg, image/png, "
                              f"image/webp or image/tiff")
        data = await self._read_body(request)
        if not data:
            raise _error(400, "empty body: send the image bytes")
        try:
            rgb = images.decode(data, self.args.max_pixels)  # checks the header's pixel count first
        except ImageDecodeError as exc:
            status = 413 if "exceeds the limit" in str(exc) else 400
            raise _error(status, f"cannot use this image: {exc}") from None
        enhanced = await self.enhance_batch(rgb)
        body = images.encode(enhanced, fmt)
        return Response(content=body, media_type=MEDIA[fmt], headers={
            "X-Model-Id": self.enhancer.model_id,
            "Server-Timing": f"total;dur={(time.perf_counter() - started) * 1000:.1f}",
        })



def build(args: AppArgs) -> Application:
    """Typed application builder for `serve run serve/config.yaml` / `serve deploy`."""
    return EnhanceService.bind(args.model_dump())
