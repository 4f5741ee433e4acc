# Production image: the official Airflow 3.3.2 image plus our requirements and code.
# The embedded CPU models serve from the same image (`python -m avalign serve`); a GPU Triton
# serving the same model names is selected by the DAG param `triton_url`.
FROM apache/airflow:3.3.2-python3.11

USER root
# PyAV ships its own FFmpeg; OpenCV headless needs libgl-free runtime only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 \
 && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt requirements-nodeps.txt /opt/avalign/
# Constrain to the Airflow image's own pins for everything Airflow depends on.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/avalign/requirements.txt \
 && pip install --no-cache-dir --no-deps -r /opt/avalign/requirements-nodeps.txt

COPY --chown=airflow:root include/ /opt/avalign/include/
COPY --chown=airflow:root operators/ /opt/avalign/operators/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/

ENV PYTHONPATH=/opt/avalign/include:/opt/avalign \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
