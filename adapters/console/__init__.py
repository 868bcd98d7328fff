"""The web console: Starlette + Jinja2 over the core's use cases (see app.py)."""
