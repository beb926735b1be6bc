"""The FastAPI peer: the hello app people write from FastAPI's tutorial.

Run by bench/http_bench.py as ``uvicorn fastapi_app:app`` from this folder, in a venv of its
own. Its routes answer what ours answer on the same paths, with JSON bodies of a similar
size, so the figures compare frameworks rather than payloads.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "alive"}


@app.get("/info")
async def info() -> dict[str, object]:
    return {
        "name": "installsure",
        "version": "0.1.0",
        "environment": "development",
        "build": {},
        "features": {"realTimeSync": True, "fileProcessing": True, "emailNotifications": True},
    }
