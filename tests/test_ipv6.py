"""IPv6: the server listens on the family its --host names, and play reaches it.

Skipped, with the reason, only on a machine that cannot bind the IPv6 loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import booklike
from guessgame import cli, netutil
from guessgame.config import Layers, Settings
from guessgame.live.host import serving
from harness import play_args
from peers import CONFIG, DEADLINE, layers_arg, wait_until_idle


def _no_ipv6_loopback() -> str | None:
    """Why this machine cannot serve on ::1, or None if it can."""
    if not socket.has_ipv6:
        return "this Python was built without IPv6"
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as error:
        return f"this machine has no IPv6 loopback: binding ::1 failed: {error}"
    return None


NO_IPV6 = _no_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(NO_IPV6 is not None, reason=NO_IPV6 or "")


@needs_ipv6
def test_play_reaches_a_server_on_the_ipv6_loopback(settings: Settings,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    printed: list[str] = []
    with serving(settings, host="::1", write=printed.append) as server:
        assert server.address == f"[::1]:{server.port}"
        code = cli.main(play_args(server.port, settings.layers, "--host", "::1", "--lower", "1",
                                    "--upper", "6", "--secret", "2", "--guesses", "6"))
        book = booklike.run_book_client(server.port, host="::1")  # a peer on IPv6 too
        wait_until_idle(server)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "client: game 1..6, secret 2"
    assert out[-1] == "client: 2 is CORRECT"
    assert book[0][-1][1] == booklike.CORRECT
    assert printed[0] == "server: new game 1..6"
    assert "server: 2 is CORRECT" in printed


@needs_ipv6
@pytest.mark.parametrize("picked", [Layers(), Layers(True, True, True, True)],
                         ids=["none", "all"])
def test_serve_command_on_ipv6_serves_play_and_the_books_client(
        picked: Layers, capsys: pytest.CaptureFixture[str]) -> None:
    """The `serve` command itself, in a process of its own, as a user runs it. With
    --seed 7 the first connection's guesses let the book's client win both games."""
    server = subprocess.Popen(
        [sys.executable, "-m", "guessgame", "serve", "--host", "::1", "--port", "0",
         "--seed", "7", "--config", str(CONFIG), "--async", layers_arg(picked), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONWARNINGS": "error::ResourceWarning"})
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("listening on [::1]:"), first
        port = int(first.rsplit(":", 1)[1])
        book = booklike.run_book_client(port, host="::1")
        code = cli.main(["play", "--host", "::1", "--port", str(port), "--async",
                         layers_arg(picked), "--config", str(CONFIG), "--words", "book"])
        server.terminate()
        out, err = server.communicate(timeout=DEADLINE)
    finally:
        if server.poll() is None:  # only after a failed assertion: do not leave it behind
            server.kill()
            server.communicate()
    assert [game[-1][1] for game in book] == [booklike.CORRECT, booklike.CORRECT]
    assert (code, capsys.readouterr().out.splitlines()[-1]) == (0, "client: 3 is CORRECT")
    assert (server.returncode, err) == (0, "")
    assert out.count("server: game cleared") == 2


@needs_ipv6
def test_the_unspecified_ipv6_address_serves_both_families_where_it_can() -> None:
    with netutil.listen("::", 0, 8) as listener:
        port = listener.getsockname()[1]
        assert netutil.address(listener.getsockname()) == f"[::]:{port}"
        with socket.create_connection(("::1", port), timeout=DEADLINE):
            listener.accept()[0].close()
        if socket.has_dualstack_ipv6():
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE):
                conn, peer = listener.accept()
                conn.close()
            assert peer[0] == "::ffff:127.0.0.1"  # an IPv4 peer, mapped into IPv6


@needs_ipv6
def test_a_specific_ipv6_address_listens_on_ipv6_only() -> None:
    with netutil.listen("::1", 0, 8) as listener:
        assert listener.family == socket.AF_INET6
        assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_an_ipv4_or_empty_host_listens_on_ipv4() -> None:
    for host, bound in (("127.0.0.1", "127.0.0.1"), ("", "0.0.0.0"), ("0.0.0.0", "0.0.0.0")):
        with netutil.listen(host, 0, 8) as listener:
            assert (listener.family, listener.getsockname()[0]) == (socket.AF_INET, bound)


def test_serve_on_a_name_that_does_not_resolve_fails_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["serve", "--host", "nosuch.invalid", "--port", "0", "--config", str(CONFIG),
                     "-q"])
    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("guessgame: cannot serve on nosuch.invalid:0: "), err
    assert len(err.splitlines()) == 1
