"""Real split inference over TCP (isplit.deploy) and the emulated network (tools/relay.py).

Every test uses loopback, or namespaces it creates itself; sockets carry timeouts and threads
are joined with a deadline, so a broken protocol fails instead of hanging.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from isplit.cli import deploy as cli_deploy
from isplit.deploy import device, server, wire
from isplit.io.files import write_table
from isplit.nets import split as split_mod
from tools.deploy import make_split, reference_predictions, running_server
from tools.relay import Relay, netns_pair, netns_unavailable, qdisc_stats


@pytest.fixture(scope="module")
def splits(tmp_path_factory, array_dataset):
    root = tmp_path_factory.mktemp("serve_splits")
    return {
        "float": make_split(root / "float/model.pt", array_dataset),
        "q8": make_split(root / "q8/model.pt", array_dataset, quant_bits=8),
        "other_layer": make_split(root / "l2/model.pt", array_dataset, layer="layer2.0"),
        "other_weights": make_split(root / "w/model.pt", array_dataset, seed=1),
    }


def assert_monotone(df, columns):
    t = df[columns].to_numpy()
    assert (np.diff(t, axis=1) >= 0).all(), f"{columns} out of order within a frame"
    for c in columns:
        assert (np.diff(df[c].to_numpy()) > 0).all(), f"{c} not increasing over frames"


@pytest.mark.parametrize("kind", ["float", "q8"])
def test_stream_matches_split_model(splits, array_dataset, tmp_path, kind):
    path = splits[kind]
    half = wire.load_half(path, "device")
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=30)
    warmup = 2
    server_log = tmp_path / "server.csv"
    with running_server(path, frames_log=server_log) as (address, result):
        with Relay(address, delay_s=0.0) as relay:  # counts the bytes on the wire
            rows = device.stream(relay.address, half, frames, warmup=warmup, timeout_s=10)
    # predictions (hence accuracy) equal the split model's own
    ref = reference_predictions(path, frames)
    measured = [r for r in rows if not r["warmup"]]
    assert [r["pred"] for r in measured] == ref
    assert len(set(ref)) > 1, "degenerate test model: one class for every image"
    summary = device.summarize(rows, half.identity)
    labels = [y for _, y in frames]
    assert summary["frames"] == len(frames) and summary["warmup"] == warmup
    assert summary["accuracy"] == pytest.approx(np.mean(np.array(ref) == np.array(labels)))

    # logs: one row per frame, timestamps ordered within and across frames
    device_log = tmp_path / "device.csv"
    write_table(pd.DataFrame(rows, columns=device.DEVICE_COLUMNS), device_log)
    dev = pd.read_csv(device_log)
    srv = pd.read_csv(server_log)
    n = len(frames) + warmup
    assert len(dev) == len(srv) == n
    assert dev["frame_id"].tolist() == srv["frame_id"].tolist() == list(range(n))
    assert srv["pred"].tolist() == dev["pred"].tolist()
    assert_monotone(dev, ["t_capture", "t_start", "t_ready", "t_sent", "t_answer"])
    assert_monotone(srv, ["t_first_byte", "t_recv", "t_done", "t_replied"])
    # one process, one clock: the server works between the device's send and its answer
    assert (srv["t_recv"].to_numpy() >= dev["t_ready"].to_numpy()).all()
    assert (srv["t_done"].to_numpy() <= dev["t_answer"].to_numpy()).all()
    parts = dev["device_queue_s"] + dev["device_s"] + dev["server_s"] + dev["network_s"]
    np.testing.assert_allclose(parts, dev["latency_s"], atol=1e-9)
    assert (dev["network_s"] >= 0).all()

    # bytes per frame on the wire = transmitted_bytes() + the documented frame header
    split, _ = split_mod.load_split(path)
    tb = split.bottleneck.transmitted_bytes()
    assert half.identity["payload_bytes"] == tb
    assert (dev["wire_bytes"] == tb + wire.FRAME_OVERHEAD).all()
    assert (srv["wire_bytes"] == tb + wire.FRAME_OVERHEAD).all()
    hello = wire.HEADER.size + len(json.dumps(wire.hello_body(half.identity)).encode())
    bye = wire.HEADER.size
    assert relay.counts.up == hello + n * (tb + wire.FRAME_OVERHEAD) + bye
    accept = wire.HEADER.size + len(json.dumps(wire.hello_body(half.identity)).encode())
    bye_back = wire.HEADER.size + len(json.dumps({"frames": n}).encode())
    assert relay.counts.down == accept + n * wire.RESULT_BYTES + bye_back


def test_payload_round_trip_for_packed_bits():
    """Codes below 8 bits are bit-packed on the wire and unpacked exactly."""
    rng = np.random.default_rng(0)
    for bits in (1, 3, 4, 7, 8):
        shape = [3, 5, 7]
        q = torch.from_numpy(rng.integers(0, 2**bits, size=[1, *shape], dtype=np.uint8))
        ident = {"quant_bits": bits, "code_shape": shape}
        ident["payload_bytes"] = (105 * bits + 7) // 8 + 8
        data = wire.encode_payload((q, torch.tensor([0.5]), torch.tensor([-1.0])), ident)
        q2, scale, offset = wire.decode_payload(data, ident)
        assert torch.equal(q2, q) and scale.item() == 0.5 and offset.item() == -1.0


def test_open_loop_fps_stream(splits, array_dataset):
    half = wire.load_half(splits["float"], "device")
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=15)
    with running_server(splits["float"]) as (address, _):
        rows = device.stream(address, half, frames, fps=100.0, warmup=1, timeout_s=10)
    assert [r["pred"] for r in rows[1:]] == reference_predictions(splits["float"], frames)
    capture = np.array([r["t_capture"] for r in rows])
    np.testing.assert_allclose(np.diff(capture), 0.01, rtol=1e-6)  # the camera's schedule
    assert all(r["device_queue_s"] >= 0 and r["t_answer"] >= r["t_sent"] for r in rows)


@pytest.mark.parametrize(
    ("device_kind", "message"),
    [("other_layer", "layer: device 'layer2.0' != server 'layer1.1'"), ("q8", "quant_bits")],
)
def test_mismatched_split_is_refused(splits, array_dataset, device_kind, message):
    half = wire.load_half(splits[device_kind], "device")
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=3)
    with running_server(splits["float"]) as (address, result):
        with pytest.raises(wire.SplitMismatch, match="split mismatch") as err:
            device.stream(address, half, frames, timeout_s=10)
    assert message in str(err.value)
    assert result["rows"] == [] and "refused" in result["log"]


def test_same_layer_other_weights_is_refused(splits, array_dataset):
    half = wire.load_half(splits["other_weights"], "device")
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=3)
    with running_server(splits["float"]) as (address, _):
        with pytest.raises(wire.SplitMismatch, match="different weights"):
            device.stream(address, half, frames, timeout_s=10)


def test_relay_adds_its_delay_each_way(splits, array_dataset):
    half = wire.load_half(splits["q8"], "device")
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=4)
    delay = 0.05
    with running_server(splits["q8"]) as (address, _):
        with Relay(address, delay_s=delay) as relay:
            rows = device.stream(relay.address, half, frames, warmup=0, timeout_s=10)
    net = np.array([r["network_s"] for r in rows])
    assert (net >= 2 * delay).all() and (net < 2 * delay + 0.1).all(), net


@pytest.mark.slow
def test_cli_serve_and_device(splits, array_dataset, tmp_path):
    """The click commands end to end: ``serve`` as a subprocess on a free port, ``device``
    in process; the device prints its statistics as JSON on its last line. Both ends read
    the shared secret from a file; the server never prints it."""
    server_log, device_log = tmp_path / "server.csv", tmp_path / "device.csv"
    secret = tmp_path / "secret"
    secret.write_text("s3cret-for-the-cli\n")
    cmd = [sys.executable, "-m", "isplit", "serve", "--split", str(splits["float"])]
    cmd += ["--port", "0", "--connections", "1", "--frames-log", str(server_log)]
    cmd += ["--timeout", "20", "--max-connections", "2", "--secret-file", str(secret)]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stderr.readline()  # "isplit serve: listening on HOST:PORT (...)"
            assert "listening on" in line, line + proc.stderr.read()
            port = line.split("listening on ")[1].split()[0].rsplit(":", 1)[1]
            args = ["--split", str(splits["float"]), "--dataset", str(array_dataset)]
            args += ["--n", "12", "--port", port, "--warmup", "1", "--log", str(device_log)]
            args += ["--secret-file", str(secret)]
            r = CliRunner().invoke(cli_deploy.device, args, catch_exceptions=False)
            assert r.exit_code == 0, r.output
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["frames"] == 12 and summary["warmup"] == 1
    assert 0 <= summary["accuracy"] <= 1 and summary["latency_s"]["p50"] > 0
    assert proc.returncode == 0, err
    assert "shared secret on" in line and "s3cret" not in line + err
    assert json.loads(out.strip().splitlines()[-1]) == {"frames": 13}
    assert len(pd.read_csv(server_log)) == len(pd.read_csv(device_log)) == 13


# --------------------------------------------------------------------------- hostile peers

FAST = server.Limits(max_connections=4, handshake_s=1.0, message_s=1.0, idle_s=2.0)


def raw_connection(address, timeout=5.0):
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_reply(sock) -> tuple[int, dict | None]:
    """The server's answer to what was sent: (type, JSON body), or (0, None) when it closed."""
    try:
        kind, body = wire.recv_msg(sock)
    except ConnectionError:
        return 0, None
    return kind, json.loads(bytes(body))


def stream_ok(dev, address, **kwargs):
    """A well-behaved device streams its frames and gets the split model's answers."""
    half, frames, expected = dev
    rows = device.stream(address, half, frames, **{"timeout_s": 5, **kwargs})
    assert [r["pred"] for r in rows if not r["warmup"]] == expected
    return rows


@pytest.fixture(scope="module")
def srv(splits):
    """The float split's server half, loaded once for the many servers below."""
    return wire.load_half(splits["float"], "server")


@pytest.fixture(scope="module")
def dev(splits, array_dataset):
    """The float split's device half, six frames and the answers the split model gives them."""
    half = wire.load_half(splits["float"], "device")
    frames = device.load_frames(array_dataset, "test", half.input_cfg, n=6)
    return half, frames, reference_predictions(splits["float"], frames)


DEEP = b"[" * 200_000 + b"]" * 200_000  # 400 KB, under the 1 MiB control limit


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[]", "JSON object expected, got list"),
        (b"42", "JSON object expected, got int"),
        (b'"hello"', "JSON object expected, got str"),
        (DEEP, "nested too deeply"),
        (b'{"layer": ' + DEEP + b"}", "nested too deeply"),
        (b"\xff\xfe", "malformed JSON"),
        (b'{"model": {"a": 1}}', "field 'model' must be str"),
        (b'{"code_shape": [1, "x"]}', "field 'code_shape' must be list"),
        (b'{"layer": "' + b"x" * 5000 + b'"}', "field 'layer' must be str"),
    ],
    ids=["list", "number", "string", "deep", "deep-field", "utf8", "type", "shape", "long"],
)
def test_malformed_hello_is_refused_and_the_server_goes_on(srv, dev, body, error):
    """A HELLO that is not a well-formed object ends that connection with a
    REFUSE naming the problem; the next device is served as if nothing happened."""
    with running_server(srv, connections=None, limits=FAST) as (address, result):
        with raw_connection(address) as sock:
            wire.send_msg(sock, wire.HELLO, body)
            kind, reply = read_reply(sock)
        assert kind == wire.REFUSE and error in reply["error"], (kind, reply)
        stream_ok(dev, address)
    assert error in result["log"], result["log"]  # the server's log names the problem too


def test_malformed_frame_is_refused_and_the_server_goes_on(srv, dev):
    ident = srv.identity
    with running_server(srv, connections=None, limits=FAST) as (address, result):
        with raw_connection(address) as sock:
            wire.send_msg(sock, wire.HELLO, json.dumps(wire.hello_body(ident)).encode())
            assert wire.recv_msg(sock)[0] == wire.ACCEPT
            wire.send_msg(sock, wire.FRAME_MSG, b"\0" * 7)  # not the frame size
            kind, reply = read_reply(sock)
        assert kind == wire.REFUSE and "expected FRAME of" in reply["error"]
        stream_ok(dev, address)
    assert "expected FRAME" in result["log"]


def trickle(address, stop, period_s, log):
    """A peer sending one byte of a HELLO header every ``period_s``: each read succeeds long
    before any per-read timeout. Records when the server cut it."""
    with raw_connection(address) as sock:
        t0 = time.monotonic()
        try:
            for byte in wire.HEADER.pack(wire.HELLO, 100) + b"{" * 100:
                if stop.wait(period_s):
                    return
                sock.sendall(bytes([byte]))
            log.append(("sent all", time.monotonic() - t0))
        except OSError:
            pass
        log.append(("cut", time.monotonic() - t0))


def test_idle_and_trickling_peers_neither_block_nor_stay(srv, dev):
    """Idle and trickling connections do not delay a device (connections
    are served concurrently), and each is cut at its handshake deadline, not kept alive by
    reads that each come in time. The device's own socket timeout (1.5 s) is half the
    handshake deadline: had it waited behind the idle peers, it would have failed."""
    limits = server.Limits(max_connections=8, handshake_s=3.0, message_s=3.0, idle_s=3.0)
    stop, cuts = threading.Event(), []
    with running_server(srv, connections=None, limits=limits) as (address, _):
        idle = [raw_connection(address) for _ in range(3)]
        tricklers = [
            threading.Thread(target=trickle, args=(address, stop, 0.05, cuts)) for _ in range(2)
        ]
        for t in tricklers:
            t.start()
        try:
            time.sleep(0.2)  # the server has accepted them all
            stream_ok(dev, address, warmup=1, timeout_s=1.5)
            # the idle peers are told at their handshake deadline (read_reply waits up to 5 s)
            replies = [read_reply(sock) for sock in idle]
            for t in tricklers:
                t.join(10)
        finally:
            stop.set()
            for sock in idle:
                sock.close()
    assert all(k == wire.REFUSE and "deadline passed" in r["error"] for k, r in replies), replies
    assert [c for c, _ in cuts] == ["cut", "cut"], cuts  # cut before sending all 105 bytes


def test_connection_limit_refuses_busy_devices_then_recovers(srv, dev):
    limits = server.Limits(max_connections=2, handshake_s=1.0, message_s=1.0, idle_s=2.0)
    with running_server(srv, connections=None, limits=limits) as (address, result):
        idle = [raw_connection(address) for _ in range(2)]
        time.sleep(0.2)
        with pytest.raises(wire.ProtocolError, match="server busy"):
            stream_ok(dev, address)
        for sock in idle:  # their handshake deadline frees the slots
            read_reply(sock)
            sock.close()
        # a slot frees when its thread has finished, just after the reply: "try again later"
        deadline = time.monotonic() + 5.0
        while True:
            try:
                stream_ok(dev, address)
                break
            except wire.ProtocolError as e:
                if "server busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    assert "busy" in result["log"]


def test_shared_secret_is_required_and_never_logged(srv, dev):
    secret = "correct horse battery staple"
    with running_server(srv, connections=None, limits=FAST, secret=secret) as (address, result):
        for given in (None, "wrong horse", secret[:-1]):
            with pytest.raises(wire.ProtocolError, match="authentication failed"):
                stream_ok(dev, address, secret=given)
        stream_ok(dev, address, secret=secret)
    assert result["log"].count("authentication failed") == 3
    assert "horse" not in result["log"]


# --------------------------------------------------------------------------- namespaces

SINK = textwrap.dedent(
    """
    import socket, struct, sys
    with socket.create_server((sys.argv[1], int(sys.argv[2]))) as ls:
        ls.settimeout(20)
        print("ready", flush=True)
        conn, _ = ls.accept()
        with conn:
            conn.settimeout(20)
            total = 0
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                total += len(data)
            conn.sendall(struct.pack("!Q", total))
    """
)
SOURCE = textwrap.dedent(
    """
    import socket, struct, sys, time
    host, port, frames, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    frame = bytes(size)
    with socket.create_connection((host, port), timeout=20) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        for _ in range(frames):
            s.sendall(frame)
        s.shutdown(socket.SHUT_WR)
        got = struct.unpack("!Q", s.recv(8))[0]
        print(got, time.monotonic() - t0, flush=True)
    """
)


def test_netns_tbf_throughput_matches_the_rate():
    """N frames of known size through a veth shaped by tbf take bytes·8/rate (with the
    TCP/IP/Ethernet headers of 1448-byte segments) within 15 %."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network namespaces not usable here: {reason}")
    rate, frames, size = 20e6, 20, 100_000
    with netns_pair(rate) as pair:
        port = "5601"
        sink = [*pair.prefix("server"), sys.executable, "-c", SINK, pair.ip_server, port]
        with subprocess.Popen(sink, stdout=subprocess.PIPE, text=True) as server:
            try:
                assert server.stdout.readline().strip() == "ready"
                source = [*pair.prefix("device"), sys.executable, "-c", SOURCE, pair.ip_server]
                source += [port, str(frames), str(size)]
                r = subprocess.run(source, capture_output=True, text=True, timeout=30)
                assert r.returncode == 0, r.stderr
                server.wait(timeout=10)
            finally:
                if server.poll() is None:
                    server.kill()
        stats = qdisc_stats(pair)
    got, seconds = r.stdout.split()
    total = frames * size
    assert int(got) == total
    wire = total + -(-total // 1448) * (32 + 20 + 14)  # TCP with timestamps, IPv4, Ethernet
    expected = wire * 8 / rate
    assert float(seconds) == pytest.approx(expected, rel=0.15), (seconds, expected, stats)
    assert "dropped 0" in stats, stats


def test_netns_unavailable_reports_a_reason(monkeypatch):
    if os.geteuid() != 0:
        assert "root" in netns_unavailable()
    monkeypatch.setattr("shutil.which", lambda tool: None)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "not installed" in netns_unavailable()


def test_relay_closes_cleanly_without_connections():
    start = time.monotonic()
    with Relay(("127.0.0.1", 9), delay_s=0.01) as relay:
        assert relay.address[1] > 0
    assert time.monotonic() - start < 2
