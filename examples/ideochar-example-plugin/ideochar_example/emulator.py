import base64
import uuid
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PRICES = {"fast": Decimal("0.02"), "normal": Decimal("0.04"), "best": Decimal("0.08")}


def routes(kit):
    async def images(request: Request):
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"message": "missing key"}, status_code=401)
        injected = await kit.fault("images", request)      # the user's fault profile, if any
        if injected is not None:
            return injected
        body = await request.json()
        if "reference_data" in body:
            reference = base64.b64decode(body["reference_data"].split(",", 1)[1])
        else:
            reference = kit.lookup(body["reference_url"])     # the emulator never fetches the internet
        if reference is None:
            return JSONResponse({"message": "reference_url cannot be read"}, status_code=400)
        seed = body.get("seed", kit.random_seed())
        job_id = uuid.uuid4().hex
        kit.admit(job_id, operation="generate", images=1, cost_usd=PRICES[body["speed"]])
        image = await kit.arender_file(reference, body["prompt"], width=1024, height=1024, seed=seed)
        return JSONResponse({"id": job_id, "images": [{"url": kit.file_url(request, image), "seed": seed}]})

    return [Route("/v1/images", images, methods=["POST"])]
