"""certificateOwnershipToken lifetime (shared/spec/provisioning.md §1.6), shortened with
--token-ttl 2: a token used within its lifetime works, an expired one is rejected 400
InvalidCertificateOwnershipToken and its certificate stays unusable."""

import time

import pytest

from iotmock_support import (EMPTY_TOKEN_MESSAGE, FLEET_DEFAULT, REGISTER_ACCEPTED_FIELDS,
                             assert_cannot_connect, create_keys, expect_accepted, expect_rejected,
                             register_thing, unique, write_credentials)

pytestmark = pytest.mark.usefixtures("broker_still_serves")

TTL = 2


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory("--token-ttl", str(TTL), name="ttl")


def test_token_within_lifetime_is_accepted(mqtt):
    """Control for the expiry test: the same server accepts a fresh token."""
    claim = mqtt.claim()
    keys = create_keys(claim)
    serial = unique("fresh")
    which, body = register_thing(claim, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": serial})
    expect_accepted(which, body, REGISTER_ACCEPTED_FIELDS)
    assert body["thingName"] == serial


def test_expired_token_is_rejected(server, mqtt, tmp_path):
    claim = mqtt.claim()
    keys = create_keys(claim)
    time.sleep(TTL + 1)
    which, body = register_thing(claim, FLEET_DEFAULT, keys["certificateOwnershipToken"],
                                 {"SerialNumber": unique("late")}, settle=0.3)
    expect_rejected(which, body, 400, "InvalidCertificateOwnershipToken")
    assert body["errorMessage"] != EMPTY_TOKEN_MESSAGE
    cert, key = write_credentials(tmp_path, "expired", keys["certificatePem"], keys["privateKey"])
    assert_cannot_connect(server, cert, key)
