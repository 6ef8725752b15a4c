"""Fixtures shared by the unit tests."""
import pytest


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A private LABKIT_RUN_DIR: lab state files made by a test go there, never to /run/labkit."""
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path))
    return tmp_path
