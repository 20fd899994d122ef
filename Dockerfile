# The image installs the wheel built from this tree, and nothing else of ours: what the
# wheel holds is what tests/live/test_package.py installs and runs outside the checkout.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
# The build backend comes from the same pins as everything else.
RUN PIP_CONSTRAINT=/src/constraints.txt pip install --no-cache-dir build \
 && PIP_CONSTRAINT=/src/constraints.txt python -m build --outdir /dist

FROM python:3.11-slim
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir -c /tmp/constraints.txt /tmp/*.whl && rm /tmp/*.whl
ENV PYTHONUNBUFFERED=1
WORKDIR /app
EXPOSE 8000
CMD ["billing", "serve", "--host", "0.0.0.0", "--port", "8000"]
