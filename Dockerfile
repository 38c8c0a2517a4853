# The analyzer on Ray's image: the same Ray and Python as the KubeRay pods (rayVersion 2.60.0).
# docker build -t rca-analyzer:0.1.0 .   (docker-compose.yml builds it as the `app` service)
FROM rayproject/ray:2.60.0-py311

WORKDIR /home/ray/rca
# Only what the package needs: no virtualenv, caches or data from the checkout.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users anomaly ./anomaly
COPY --chown=ray:users pipelines ./pipelines
COPY --chown=ray:users deployments ./deployments
COPY --chown=ray:users configs ./configs
RUN pip install --no-cache-dir . && rca --help >/dev/null

ENV RCA_HOST=0.0.0.0 \
    RCA_PORT=8000 \
    RCA_DATA_DIR=/home/ray/rca-data
# 8000: the API (Serve proxy); 8080: Ray's metrics agent when started with --metrics-export-port
EXPOSE 8000 8080
CMD ["rca", "serve", "--host", "0.0.0.0", "--port", "8000", "--metrics-port", "8080", "--no-dashboard"]
