"""One router per resource; `main.create_app` includes them explicitly."""
