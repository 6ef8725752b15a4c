"""labkit/etcdpb.py: python-etcd3's messages rebuilt for the installed protobuf runtime."""
import os
import subprocess
import sys

import pytest

from labkit.etcdpb import serialized_proto

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# one message of each file, encoded: a lease watch request, a txn compare, an event
PROGRAM = r"""
import warnings; warnings.simplefilter("ignore")
import labkit, etcd3
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2
from google.protobuf.internal import api_implementation
w = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=b"/coreos.com/network/subnets/",
                                                                   range_end=b"/coreos.com/network/subnets0",
                                                                   start_revision=7))
c = etcdrpc.Compare(key=b"k", result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.CREATE, create_revision=0)
e = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"k", value=b"v", lease=3))
back = kv_pb2.Event.FromString(e.SerializeToString())
print(api_implementation.Type(), (w.SerializeToString() + c.SerializeToString() + e.SerializeToString()).hex(),
      back.type, back.kv.lease, etcdrpc.NOSPACE)
"""


def run(env_extra):
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    env.update(env_extra, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


def test_rebuilt_messages_encode_as_the_shipped_ones():
    """`import etcd3` after `import labkit` uses the fast runtime, and every message is
    byte for byte what python-etcd3's own modules (pure-Python runtime) make of it."""
    fast = run({})
    shipped = run({"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    assert fast[0] != "python" and shipped[0] == "python"
    assert fast[1:] == shipped[1:]
    assert fast[2:] == ["1", "3", "1"]


def test_serialized_proto_reads_the_argument_without_running_the_file(tmp_path):
    old = tmp_path / "x_pb2.py"
    old.write_text("raise SystemExit('never run')\n"
                   "_b=lambda x: x.encode('latin1')\n"
                   "DESCRIPTOR = _descriptor.FileDescriptor(name='x.proto', "
                   "serialized_pb=_b('\\n\\x07x.proto\\xff'))\n")
    assert serialized_proto(str(old)) == b"\n\x07x.proto\xff"
    (tmp_path / "none_pb2.py").write_text("DESCRIPTOR = None\n")
    with pytest.raises(ImportError):
        serialized_proto(str(tmp_path / "none_pb2.py"))
    (tmp_path / "split_pb2.py").write_text("D = F(name='y',\n  serialized_pb=_b('\\x01ab'\n    'c\\xfe'), x=1)\n")
    assert serialized_proto(str(tmp_path / "split_pb2.py")) == b"\x01abc\xfe"
    (tmp_path / "bytes_pb2.py").write_text("D = F(serialized_pb=b'\\x02z')\n")
    assert serialized_proto(str(tmp_path / "bytes_pb2.py")) == b"\x02z"
    for bad in ("D = F(serialized_pb=_b(open('/etc/passwd').read()))\n", "D = F(serialized_pb=_b('x' b'y'))\n"):
        (tmp_path / "bad_pb2.py").write_text(bad)
        with pytest.raises(ImportError):
            serialized_proto(str(tmp_path / "bad_pb2.py"))


def test_the_zygote_children_get_the_fast_runtime():
    """Every flanneld is forked from the zygote after its preload: that preload must not
    pick the pure-Python runtime (it once set PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python
    for the whole lab, costing each flanneld CPU per etcd answer and memory)."""
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    env["PYTHONPATH"] = ROOT
    program = ("import labkit.zygote as z; z.preload()\n"
               "from google.protobuf.internal import api_implementation as a; print(a.Type())")
    r = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "upb"
