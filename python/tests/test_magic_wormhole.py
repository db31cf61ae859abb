"""The magic-wormhole flavour: Python to Python through our server's mailbox
endpoint, and with magic-wormhole itself: the ``wormhole`` command (text both
ways, a file offer refused cleanly) and an application on its library. The
tests against magic-wormhole need it installed (CI installs 0.24); elsewhere
they skip, saying so."""

import asyncio
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, both_data
from wormhole_sync import errors
from wormhole_sync.magic_wormhole import (
    TEXT_APPID,
    AsyncInitiator,
    AsyncReceiver,
    Initiator,
    Receiver,
    is_ack,
    read_text,
    text_offer,
)

APP = "example.com/python-magic-wormhole"
WORMHOLE = os.path.join(os.path.dirname(sys.executable), "wormhole")


@pytest.fixture(scope="session")
def mailbox(server):
    """Our server's mailbox-protocol endpoint."""
    return server.replace("http://", "ws://") + "/v1"


def need_magic_wormhole():
    if importlib.util.find_spec("wormhole") is not None and os.path.exists(WORMHOLE):
        return
    message = "magic-wormhole is not installed here (pip install magic-wormhole==0.24.0)"
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must run these tests")
    pytest.skip(message + ": the tests against it do not run")


def wormhole(mailbox, *args):
    """Starts the ``wormhole`` command against our server, without transit."""
    command = [WORMHOLE, "--relay-url", mailbox, "--transit-helper", "tcp:127.0.0.1:9", *args]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def code_shown_by(sender):
    for line in sender.stderr:
        found = re.search(r"Wormhole code is: (\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError("the sender showed no code (exit %s)" % sender.wait())


def test_two_python_sides_exchange_over_the_mailbox_protocol(mailbox):
    i = Initiator(APP, b"initiator's data", rendezvous=mailbox)
    r = Receiver(APP, i.get_code(), b"receiver's data", rendezvous=mailbox)
    assert both_data(i, r) == (b"receiver's data", b"initiator's data")
    assert i.get_verifier() == r.get_verifier() and len(i.get_verifier()) == 32
    assert i.rendezvous == mailbox and i.appid == APP


def test_the_asyncio_flavour_and_a_wrong_code(mailbox):
    async def main():
        i = AsyncInitiator(APP, b"i", rendezvous=mailbox, timeout=30)
        nameplate, words = (await i.get_code()).split("-", 1)
        # Valid words of another code: a typo the word list cannot catch.
        other_words = words
        while other_words == words:
            other = AsyncInitiator(APP + "/other", b"-", rendezvous=mailbox, timeout=30)
            other_words = (await other.get_code()).split("-", 1)[1]
            await other.close()
        wrong = "%s-%s" % (nameplate, other_words)
        r = AsyncReceiver(APP, wrong, b"r", rendezvous=mailbox, timeout=30)
        return await asyncio.gather(i.get_data(), r.get_data(), return_exceptions=True)

    both = asyncio.run(main())
    assert [type(e) for e in both] == [errors.WrongCodeError] * 2, both


def test_a_state_saved_mid_exchange_resumes(mailbox):
    i = Initiator(APP, b"initiator's data", rendezvous=mailbox)
    code = i.get_code()
    saved = i.serialize()
    i.close()  # serialized: the nameplate stays for the saved copy
    resumed = Initiator.from_serialized(saved)
    r = Receiver(APP, code, b"receiver's data", rendezvous=mailbox)
    assert both_data(resumed, r) == (b"receiver's data", b"initiator's data")
    with pytest.raises(errors.BadStateError):
        Receiver.from_serialized(saved)


def test_wormhole_send_text_reaches_a_python_receiver(mailbox):
    need_magic_wormhole()
    sender = wormhole(mailbox, "send", "--text", "meet at 6")
    r = Receiver.for_text(code_shown_by(sender), rendezvous=mailbox)
    assert read_text(r.get_data()) == "meet at 6"
    assert sender.wait(timeout=60) == 0, sender.stderr.read()


def test_python_text_reaches_wormhole_receive(mailbox):
    need_magic_wormhole()
    i = Initiator.for_text("hello from python", rendezvous=mailbox)
    receiver = wormhole(mailbox, "receive", i.get_code())
    assert is_ack(i.get_data())
    out, err = receiver.communicate(timeout=60)
    assert (receiver.returncode, out.strip()) == (0, "hello from python"), err


def test_a_file_offer_is_refused_cleanly_on_both_sides(mailbox, tmp_path):
    need_magic_wormhole()
    path = tmp_path / "notes.txt"
    path.write_text("a file, not a text message")
    sender = wormhole(mailbox, "send", str(path))
    r = Receiver.for_text(code_shown_by(sender), rendezvous=mailbox)
    with pytest.raises(errors.ProtocolError, match="wormhole send --text"):
        read_text(r.get_data())
    out, err = sender.communicate(timeout=60)
    assert sender.returncode != 0
    assert "remote error, transfer abandoned: wormhole-sync receives text messages only" in err, err


def test_a_magic_wormhole_library_app_and_python_exchange_bytes(mailbox):
    need_magic_wormhole()
    peer = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "mw_library_peer.py"), "send", mailbox, APP, b"from the library".hex()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = peer.stdout.readline()
    code = re.match(r"code: (\S+)", line)
    assert code, (line, peer.stderr.read() if peer.poll() is not None else "")
    r = Receiver(APP, code.group(1), b"from python", rendezvous=mailbox)
    assert r.get_data() == b"from the library"
    out, err = peer.communicate(timeout=60)
    assert peer.returncode == 0, err
    assert "received: %s" % b"from python".hex() in out


def test_text_helpers_and_arguments():
    assert read_text(text_offer("hi")) == "hi"
    assert TEXT_APPID == "lothar.com/wormhole/text-or-file-xfer"
    assert not is_ack(b"{}")
    with pytest.raises(errors.ProtocolError):
        read_text(b"not json")
    with pytest.raises(TypeError):
        text_offer(b"bytes")
    with pytest.raises(TypeError):
        Initiator(APP, "not bytes")
    with pytest.raises(ValueError):
        Initiator(APP, b"x", code_words=0)
    with pytest.raises(errors.UsageError):
        Initiator(APP, b"x" * 100_000)
