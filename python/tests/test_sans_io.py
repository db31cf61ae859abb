"""The sans-IO state machine: the example that drives it from a loop of its
own (asyncio streams and a minimal HTTP client), a state carried from it to
the blocking flavour, and bad input from a host."""

import math
import subprocess
import sys
import time

import pytest

from conftest import ROOT, both_data
from wormhole_sync import errors
from wormhole_sync.sans_io import Code, Exchange, Failed, Transmit
from wormhole_sync.transcribe import Initiator, Receiver

APP = "example.com/python-sans-io"


def test_the_own_loop_example_exchanges_data(server):
    done = subprocess.run(
        [sys.executable, str(ROOT / "python" / "examples" / "own_loop.py"), "--rendezvous", server],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "initiator got: receiver's data" in done.stdout
    assert "receiver got: initiator's data" in done.stdout


def test_a_hand_driven_initiator_hands_its_state_to_the_blocking_flavour(server):
    import urllib.request

    exchange = Exchange.initiator(APP, b"initiator's data", rendezvous=server)
    assert exchange.poll_transmit(time.time()) is None, "nothing before start"
    exchange.start(time.time())
    transmit = exchange.poll_transmit(time.time())
    assert isinstance(transmit, Transmit) and transmit.method == "POST"
    assert transmit.url == server + "/v1/allocate" and transmit.timeout > 0
    request = urllib.request.Request(transmit.url, transmit.body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=transmit.timeout) as answer:
        exchange.handle_response(time.time(), transmit.id, answer.status, answer.read())
    event = exchange.poll_event()
    assert isinstance(event, Code)
    assert event.code.split("-", 1)[1] not in repr(event), "the words stay secret"
    # Carried on by the blocking flavour's driver, from the saved state.
    initiator = Initiator.from_serialized(exchange.serialize())
    receiver = Receiver(APP, event.code, b"receiver's data", rendezvous=server)
    assert both_data(initiator, receiver) == (b"receiver's data", b"initiator's data")


def test_transport_errors_and_timeouts_end_in_a_failed_event():
    exchange = Exchange.receiver(APP, "7-guitarist-revenge", b"r", rendezvous="http://127.0.0.1:9", timeout=2)
    start = 1_700_000_000.0
    exchange.start(start)
    now = start
    failed = None
    while failed is None and now < start + 10:
        while (transmit := exchange.poll_transmit(now)) is not None:
            exchange.handle_transport_error(now, transmit.id, "connection refused")
        while (event := exchange.poll_event()) is not None:
            if isinstance(event, Failed):
                failed = event
        now = exchange.poll_timeout() or now + 0.5
        exchange.handle_timeout(now)
    assert failed is not None and isinstance(failed.error, errors.ServerUnreachableError), failed
    assert "connection refused" in str(failed.error)
    assert now <= start + 3, "the timeout counted from the start given"


def test_a_permanent_transport_error_fails_at_once():
    exchange = Exchange.initiator(APP, b"i", rendezvous="https://127.0.0.1:9")
    exchange.start(100.0)
    transmit = exchange.poll_transmit(100.0)
    exchange.handle_transport_error(100.1, transmit.id, "certificate not trusted", permanent=True)
    event = exchange.poll_event()
    assert isinstance(event, Failed) and isinstance(event.error, errors.ServerUnreachableError)


def test_bad_input_from_the_host_is_a_clear_error_or_ignored():
    exchange = Exchange.initiator(APP, b"i", rendezvous="http://127.0.0.1:9")
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="seconds since the Unix epoch"):
            exchange.start(bad)
    exchange.start(100.0)
    transmit = exchange.poll_transmit(100.0)
    # Answers to unknown requests are ignored; garbage answers are not a crash.
    exchange.handle_response(100.0, transmit.id + 1000, 200, b"{}")
    exchange.handle_response(100.0, transmit.id, 200, b"\xff not json")
    with pytest.raises(OverflowError):
        exchange.handle_response(100.0, -1, 200, b"")
    with pytest.raises(TypeError):
        exchange.handle_response(100.0, transmit.id, 200, "text, not bytes")
    with pytest.raises(errors.BadStateError):
        Exchange.from_serialized(b"{not a state")
    with pytest.raises(errors.BadCodeError):
        Exchange.receiver(APP, "not a code", b"")
    assert exchange.role == "initiator"
