"""OpenAI-compatible embedding server with sparse / multi-vector outputs and hybrid search.

``create_app(model, index=..., config=ServeConfig(...))`` builds the FastAPI app;
``embforge serve MODEL`` runs it with uvicorn. See docs/serving.md.
"""

from embforge.serve.app import create_app
from embforge.serve.config import ApiError, ServeConfig

__all__ = ["create_app", "ServeConfig", "ApiError"]
