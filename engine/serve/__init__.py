"""Serving GACN on Triton Inference Server: a model repository (repository), the Python-backend
models it names (models), and a launcher for the tritonserver that nvidia-pytriton bundles (server).
The client side is engine.client."""
