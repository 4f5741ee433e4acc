"""avalign: audio-visual data alignment (describe → plan → edit → reflect).

Plain Python core of the platform. It never imports Airflow; the DAGs in ``dags/`` and the
operators in ``operators/`` are thin faces over this package.
"""

__version__ = "0.1.0"
