"""Thin Airflow operators over avalign, for DAGs composed by hand.

The shipped DAG (dags/av_align.py) uses TaskFlow tasks; these operators expose the same task
bodies (avalign.tasks) as classic operators. ``__init__`` only stores arguments; avalign and every
heavy module load inside ``execute``.
"""

from operators.align_partition import AlignPartitionOperator

__all__ = ["AlignPartitionOperator"]
