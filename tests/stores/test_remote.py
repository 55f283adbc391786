"""stores.remote: locations, credentials, what tasks carry, log masking."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stores.errors import CredentialError
from stores.remote import (CredentialFilter, is_remote, public_options, redact_uri, scheme_of, scrub, split_credentials,
                           worker_credential_env)


def test_schemes_and_redaction():
    assert scheme_of("S3://b/x") == "s3" and scheme_of("/data") == "" and scheme_of("file:///x") == "file"
    assert redact_uri("https://user:pw@host/a.zarr") == "https://host/a.zarr"


def test_is_remote():
    assert is_remote("s3://b/x") and is_remote("https://h/x") and is_remote("gs://b")
    assert not is_remote("/data/gtzan") and not is_remote("file:///data") and not is_remote(Path("x"))
    assert not is_remote(None)


def test_public_options_drop_every_credential():
    options = {"key": "AKIA", "secret": "s3cr3t", "token": "t", "anon": False,
               "client_kwargs": {"endpoint_url": "http://127.0.0.1:7480", "region_name": "default",
                                 "aws_secret_access_key": "x"},
               "config_kwargs": {"retries": {"max_attempts": 3}}}
    assert public_options(options) == {
        "anon": False, "client_kwargs": {"endpoint_url": "http://127.0.0.1:7480", "region_name": "default"},
        "config_kwargs": {"retries": {"max_attempts": 3}}}
    assert public_options(None) == {}


def test_scrub_masks_option_and_environment_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET99")
    text = scrub("key OPTSECRET1 and ENVSECRET99 here", {"client_kwargs": {"secret": "OPTSECRET1"}})
    assert text == "key *** and *** here"


def test_worker_credential_env_hands_s3_credentials_over_as_aws_variables():
    env = worker_credential_env({"key": "AKIA1", "client_kwargs": {"aws_secret_access_key": "S1",
                                                                   "endpoint_url": "http://x"}}, None)
    assert env == {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "S1"}
    with pytest.raises(CredentialError, match="password.*--workers 0"):
        worker_credential_env({"password": "pw"})
    with pytest.raises(CredentialError, match="two different values for AWS_ACCESS_KEY_ID"):
        worker_credential_env({"key": "A"}, {"key": "B"})


def test_split_credentials_keeps_them_in_this_process_or_the_workers_environment():
    options = {"key": "AKIA1", "anon": False}
    assert split_credentials(True, None, options) == ([options], {})
    assert split_credentials(False, None, options) == ([{"anon": False}], {"AWS_ACCESS_KEY_ID": "AKIA1"})
    assert split_credentials(False, "tcp://h:8786", options) == ([{"anon": False}], {})


def test_credential_filter_masks_records(caplog):
    log = logging.getLogger("tests.remote")
    log.addFilter(CredentialFilter({"secret": "TOPSECRET"}))
    with caplog.at_level(logging.INFO, logger="tests.remote"):
        log.info("header %s", "TOPSECRET")
    assert caplog.records[-1].getMessage() == "header ***"
