# tradetape: one image for every service (`tradetape ingest|persist|analytics|exchange`).
# The build stage makes a wheel; the final image holds only the installed package and its
# dependencies (no source tree), runs as an unprivileged user and keeps its data in /data.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tradetape ./tradetape
COPY services ./services
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin tradetape \
    && mkdir /data && chown tradetape:tradetape /data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl
ENV TRADETAPE_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER tradetape
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["tradetape"]
CMD ["--help"]
