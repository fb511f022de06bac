FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tradetape ./tradetape
COPY services ./services
RUN pip install --no-cache-dir .
ENV TRADETAPE_DATA_DIR=/data
ENTRYPOINT ["tradetape"]
