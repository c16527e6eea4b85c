# The project image (deploy/README.md, "Kubernetes (Helm)"): one image for the code server, the run pods, the daemon
# and the webserver. Its default command is the code server; the run launcher starts run pods from it with
# `dagster api execute_run ...` as the container's arguments, so there is no ENTRYPOINT.
#
#   docker build -t <registry>/prison-case-notes-to-probation:<release> .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --no-create-home dagster \
    && mkdir -p /opt/dagster/app "$DAGSTER_HOME" \
    && chown -R dagster:dagster /opt/dagster

WORKDIR /opt/dagster/app

# The package with the k8s extra (dagster-k8s: the daemon and the webserver build the K8sRunLauncher). The Dagster
# libraries are pinned to one release train in pyproject.toml; psycopg2-binary needs no compiler.
COPY pyproject.toml README.md prison_case_notes_dagster_home.pth ./
COPY integration ./integration
RUN pip install '.[k8s]'

USER 10001
EXPOSE 4000
CMD ["dagster", "api", "grpc", "-m", "integration.definitions", "--location-name", "integration", "-h", "0.0.0.0", "-p", "4000"]
