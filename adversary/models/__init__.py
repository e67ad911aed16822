"""Model access at the edge: litellm chat routes, the embedded local server, dspy LMs and embedders.

Public names:
    ModelRoute, resolve_route, complete, check_reachable, Sampling, ChatResult   -- chat.py
    LocalServers                                                                   -- local_server.py
    CHAT_MODELS, EMBEDDING_MODELS, chat_model (also `local/BASE+ADAPTER`), is_local -- embedded.py
    get_embedder, Embedder                                                         -- embedder.py
    (the packaged MiniLM through ONNX Runtime, exported once from its weights       -- minilm_onnx.py)
"""
