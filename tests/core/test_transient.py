"""core.transient: which failures a task may retry."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from core.errors import DataError, NotFoundError
from core.transient import is_transient_error


def test_is_transient_error_real_unreachable_database_is_transient() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(OperationalError) as caught, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert is_transient_error(caught.value)


def test_is_transient_error_data_and_not_found_are_not() -> None:
    assert not is_transient_error(DataError("training data is empty"))
    assert not is_transient_error(NotFoundError("no version 9"))
    assert not is_transient_error(ValueError("bad"))
    assert not is_transient_error(IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_is_transient_error_mlflow_codes_and_messages() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    assert is_transient_error(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient_error(MlflowException("(sqlite3.OperationalError) database is locked"))
    assert not is_transient_error(
        MlflowException(
            "Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST
        )
    )


def test_is_transient_error_follows_the_cause_chain() -> None:
    outer = RuntimeError("upload failed")
    outer.__cause__ = ConnectionResetError("peer reset")
    assert is_transient_error(outer)
    assert not is_transient_error(RuntimeError("no cause"))
