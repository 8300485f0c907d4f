"""The HTTP API: the FastAPI app (`app.create_app`) over a job store; it never touches an engine.

- `routes/`: one module per resource (remix submits, requests, cancel, events, outputs,
  account, health, the playground page); `static/` holds the playground's files.
- `request_body.py` reads submit bodies (JSON or multipart, size-capped); `responses.py` builds
  the JSON bodies and every URL handed out.
- `access.py`: API keys and rate limits; `errors.py`: the error envelope and the one place
  exceptions become HTTP statuses.
- `middleware.py`: per-request metrics and logs; `openapi.py`: the documented error answers;
  `state.py`: what the routes share.
"""
