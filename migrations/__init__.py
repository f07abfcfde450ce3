"""Alembic environment and versions for the store, shipped inside the wheel.

Users never see an ``alembic.ini``: ``litellm_failover.store.migrate`` configures Alembic in code
and points it at this package's directory (``litellm-failover db upgrade``, or the writer on
start-up). Each schema change is one file in ``versions/``, written by hand or with
``alembic revision --autogenerate`` against ``litellm_failover.store.models``.
"""
