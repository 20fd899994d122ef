FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY billing billing
COPY ingest_api ingest_api
COPY state state
COPY flows flows
COPY sdk sdk
COPY webhooks webhooks
RUN pip install --no-cache-dir -c constraints.txt .
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["billing", "serve", "--host", "0.0.0.0", "--port", "8000"]
