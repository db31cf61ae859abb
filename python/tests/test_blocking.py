"""The blocking flavour: the examples as written for Python users (apart from
the import line), each side in a process of its own, and what they promise
around them."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import both_data, exchange_in_processes, run_python
from wormhole_sync import errors
from wormhole_sync.transcribe import Initiator, Receiver

APP = "example.com/python-tests"

INITIATOR = '''
from wormhole_sync.transcribe import Initiator
data = b"initiator's data"
i = Initiator("appid", data)
code = i.get_code()
print("Invitation Code: %s" % code, flush=True)
theirdata = i.get_data()
print("Their data: %s" % theirdata.decode("ascii"))
'''

RECEIVER = '''
import sys
from wormhole_sync.transcribe import Receiver
data = b"receiver's data"
code = sys.argv[1]
r = Receiver("appid", code, data)
theirdata = r.get_data()
print("Their data: %s" % theirdata.decode("ascii"))
'''

# The older flow: start() shows the code, finish() returns the peer's data.
INITIATOR_START_FINISH = '''
from wormhole_sync.transcribe import Initiator
i = Initiator("appid", b"initiator's data")
print("Invitation Code: %s" % i.start(), flush=True)
print("Their data: %s" % i.finish().decode("ascii"))
'''

RECEIVER_START_FINISH = '''
import sys
from wormhole_sync.transcribe import Receiver
r = Receiver("appid", sys.argv[1], b"receiver's data")
r.start()
print("Their data: %s" % r.finish().decode("ascii"))
'''


def test_the_blocking_examples_exchange_data_between_two_processes(server):
    exchange_in_processes(server, INITIATOR, RECEIVER)


def test_the_start_finish_flow_exchanges_data_too(server):
    exchange_in_processes(server, INITIATOR_START_FINISH, RECEIVER_START_FINISH)


def test_a_wrong_code_fails_on_both_sides(server):
    i = Initiator(APP, b"one", rendezvous=server, timeout=30)
    code = i.get_code()
    number, words = code.split("-", 1)
    # Valid words of another code: a typo the word list cannot catch.
    other_words = words
    while other_words == words:
        other = Initiator(APP + "/other", b"-", rendezvous=server, timeout=30)
        other_words = other.get_code().split("-", 1)[1]
        other.close()
    wrong = "%s-%s" % (number, other_words)
    r = Receiver(APP, wrong, b"two", rendezvous=server, timeout=30)
    results = {}

    def receive():
        try:
            r.get_data()
        except errors.WormholeSyncError as e:
            results["receiver"] = e

    thread = threading.Thread(target=receive)
    thread.start()
    with pytest.raises((errors.WrongCodeError, errors.ChannelGoneError)) as initiator_error:
        i.get_data()
    thread.join(30)
    assert isinstance(results.get("receiver"), (errors.WrongCodeError, errors.ChannelGoneError))
    assert errors.WrongCodeError in (type(initiator_error.value), type(results["receiver"]))


def test_the_timeout_is_a_timeout_error(server):
    i = Initiator(APP, b"alone", rendezvous=server, schedule=[(0.0, 0.1)], timeout=1.0)
    i.get_code()
    started = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        i.get_data()
    assert isinstance(raised.value, errors.ExchangeTimeoutError)
    assert time.monotonic() - started < 10


def test_a_state_serialized_in_python_resumes_in_another_process(server):
    i = Initiator(APP, b"saved", rendezvous=server, timeout=60)
    code = i.get_code()
    saved = i.serialize()
    assert saved.decode("ascii").startswith("{"), "printable JSON"
    del i
    resumed = run_python(
        "import sys\n"
        "from wormhole_sync.transcribe import Initiator\n"
        "i = Initiator.from_serialized(sys.argv[1].encode())\n"
        "print(i.get_data().decode())\n",
        saved.decode("ascii"),
    )
    r = Receiver(APP, code, b"to the resumed one", rendezvous=server, timeout=60)
    assert r.get_data() == b"saved"
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.strip() == "to the resumed one"


def test_python_and_the_rust_cli_exchange_both_ways(server, cli):
    env = {**os.environ, "WORMHOLE_SYNC_RENDEZVOUS": server}
    # Python sends, the CLI receives.
    i = Initiator(APP, b"from python", rendezvous=server, timeout=60)
    code = i.get_code()
    received = subprocess.Popen(
        [cli, "receive", "--appid", APP, code, "from the cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert i.get_data() == b"from the cli"
    out, err = received.communicate(timeout=60)
    assert received.returncode == 0, err
    assert "from python" in out
    # The CLI sends, Python receives.
    sending = subprocess.Popen(
        [cli, "send", "--appid", APP, "from the cli"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in sending.stderr:
        shown = re.search(r"Invitation code: (\S+)", line)
        if shown:
            break
    assert shown, "the CLI showed no code (exit %s)" % sending.wait()
    assert Receiver(APP, shown.group(1), b"from python", rendezvous=server).get_data() == b"from the cli"
    out, _ = sending.communicate(timeout=60)
    assert sending.returncode == 0
    assert "from python" in out


def test_bad_arguments_are_clear_errors(server):
    with pytest.raises(TypeError):
        Initiator(APP, "text, not bytes", rendezvous=server)
    with pytest.raises(TypeError):
        Initiator(APP, b"x", rendezvous=server, schedule="often")
    with pytest.raises(ValueError):
        Initiator(APP, b"x", rendezvous=server, timeout=-1)
    with pytest.raises(errors.BadCodeError):
        Receiver(APP, "not a code", b"x", rendezvous=server)
    with pytest.raises(errors.BadStateError):
        Initiator.from_serialized(b"{not json")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_a_blocking_wait_promptly(server):
    waiting = run_python(
        "from wormhole_sync.transcribe import Initiator\n"
        "i = Initiator('%s', b'x', rendezvous='%s', timeout=600)\n"
        "print(i.get_code(), flush=True)\n"
        "try:\n"
        "    i.get_data()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n" % (APP, server)
    )
    code = waiting.stdout.readline().strip()
    assert code
    time.sleep(0.3)
    started = time.monotonic()
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=30)
    assert "interrupted" in out, err
    assert time.monotonic() - started < 5
    # The channel was closed: the code leads nowhere (or to a closed peer).
    r = Receiver(APP, code, b"late", rendezvous=server, timeout=10)
    with pytest.raises((errors.PeerClosedError, errors.UnknownChannelError)):
        r.get_data()


def test_a_state_saved_in_python_resumes_in_the_rust_cli_and_back(server, cli, tmp_path):
    env = {**os.environ, "WORMHOLE_SYNC_RENDEZVOUS": server}
    # Python saves, the CLI resumes.
    i = Initiator(APP, b"from python", rendezvous=server, timeout=60)
    code = i.get_code()
    state = tmp_path / "python-state.json"
    state.write_bytes(i.serialize())
    del i
    resumed = subprocess.Popen(
        [cli, "resume", str(state), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert Receiver(APP, code, b"to the cli", rendezvous=server, timeout=60).get_data() == b"from python"
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.strip() == "to the cli"
    # The CLI saves (its state file), is stopped, and Python resumes.
    saved = tmp_path / "cli-state.json"
    sending = subprocess.Popen(
        [cli, "send", "--appid", APP, "--state", str(saved), "--quiet", "from the cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not (saved.exists() and saved.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    sending.send_signal(signal.SIGINT)
    sending.communicate(timeout=30)
    restored = Initiator.from_serialized(saved.read_bytes())
    code = restored.get_code()
    r = Receiver(APP, code, b"to python", rendezvous=server, timeout=60)
    assert both_data(restored, r) == (b"to python", b"from the cli")


def exchange_here(server, tag):
    """One whole exchange in this process (the receiver on a thread)."""
    i = Initiator(APP, b"i-" + tag, rendezvous=server, timeout=30)
    r = Receiver(APP, i.get_code(), b"r-" + tag, rendezvous=server, timeout=30)
    return both_data(i, r)


def test_a_child_made_by_fork_runs_exchanges_of_its_own(server):
    # The parent's runtime exists (its threads do not survive a fork).
    assert exchange_here(server, b"parent") == (b"r-parent", b"i-parent")
    child = os.fork()
    if child == 0:
        signal.alarm(30)  # a hang kills the child rather than the test run
        try:
            ok = exchange_here(server, b"child") == (b"r-child", b"i-child")
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert exchange_here(server, b"again") == (b"r-again", b"i-again")
