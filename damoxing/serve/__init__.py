"""The OpenAI-compatible server: `damoxing serve MODEL` (app.py: the HTTP side; engine.py: the model's thread)."""
