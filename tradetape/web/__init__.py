"""The web page (`tradetape web`): static files under `static/`, served with their config by `server`."""
