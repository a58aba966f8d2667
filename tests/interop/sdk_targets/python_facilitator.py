"""A facilitator built on the official Python x402 SDK (``x402FacilitatorSync``), as an e2e target.

Environment (the official e2e harness's): ``PORT``, ``EVM_NETWORK``, ``EVM_RPC_URL``,
``EVM_PRIVATE_KEY`` (or ``FACILITATOR_EVM_PRIVATE_KEY``; it pays the gas).

The exact EVM scheme is registered with the SDK's helper for ``EVM_NETWORK`` over the SDK's web3
signer with its default settings. Endpoints: ``POST /verify`` and ``POST /settle`` (bodies
``{x402Version, paymentPayload, paymentRequirements}``; FastAPI answers 422 when they do not parse,
an error the SDK raises is 400 ``{"error": ...}``), ``GET /supported``, ``GET /health``, ``POST /close``.
They are plain ``def`` (run in the thread pool): the web3 signer blocks on HTTP.
"""

from __future__ import annotations

from _common import env, private_key, serve
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator
from x402.schemas import PaymentError, SettleRequest, VerifyRequest

network = env("EVM_NETWORK")
signer = FacilitatorWeb3Signer(private_key=private_key("facilitator"), rpc_url=env("EVM_RPC_URL"))
facilitator = register_exact_evm_facilitator(x402FacilitatorSync(), signer, networks=network)


def wire(model: BaseModel) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def answer(call, body: VerifyRequest | SettleRequest) -> JSONResponse:
    try:
        result = call(body.payment_payload, body.payment_requirements)
    except PaymentError as exc:
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
    return JSONResponse(wire(result))


app = FastAPI()


@app.post("/verify")
def verify(body: VerifyRequest) -> JSONResponse:
    return answer(facilitator.verify, body)


@app.post("/settle")
def settle(body: SettleRequest) -> JSONResponse:
    return answer(facilitator.settle, body)


@app.get("/supported")
def supported() -> JSONResponse:
    return JSONResponse(wire(facilitator.get_supported()))


serve(app, "Facilitator listening")
