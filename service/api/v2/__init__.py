"""The Open Inference Protocol v2 over HTTP (the KServe v2 / Triton protocol), on v1's port.

Each loss, and each of its aliases, is a model; its roles are the inputs. The protocol's wire
format lives here, and only it: the request body with the binary tensor data extension
(``codec``), the model metadata generated from the catalog (``models``), the error body
``{"error": ...}`` (``errors``), the routes (``routes``) and the infer route that the Gateway
serves directly (``infer``). Admission, checks, submission and accounting are the core's
(``service.core``), as for v1: a v1 and a v2 request of the same loss share compute calls.

This module imports nothing, so that ``api.problems`` can import ``errors`` beside it.
"""
