# Decodes datagrams a Jaeger agent would receive, for tests/jaeger.rs, with Jaeger's
# own generated Thrift code (jaeger-client's thrift_gen, TCompactProtocol, the
# Agent.emitBatch arguments). Reads datagrams from stdin, each framed by its length
# (4 bytes, big endian), and prints each as one JSON line. Ids are printed unsigned
# (Thrift's i64 are signed), tags as [key, vType, value] to keep types and order.
import json
import struct
import sys
from thrift.protocol import TCompactProtocol
from thrift.transport import TTransport
from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger import ttypes

U64 = (1 << 64) - 1


def tag(t):
    value = {
        ttypes.TagType.STRING: t.vStr,
        ttypes.TagType.DOUBLE: t.vDouble,
        ttypes.TagType.BOOL: t.vBool,
        ttypes.TagType.LONG: t.vLong,
        ttypes.TagType.BINARY: None if t.vBinary is None else t.vBinary.hex(),
    }.get(t.vType)
    return [t.key, ttypes.TagType._VALUES_TO_NAMES.get(t.vType, t.vType), value]


def span(s):
    return {
        "traceIdHigh": s.traceIdHigh & U64,
        "traceIdLow": s.traceIdLow & U64,
        "spanId": s.spanId & U64,
        "parentSpanId": s.parentSpanId & U64,
        "operationName": s.operationName,
        "flags": s.flags,
        "startTime": s.startTime,
        "duration": s.duration,
        "references": [
            {"refType": r.refType, "traceIdHigh": r.traceIdHigh & U64,
             "traceIdLow": r.traceIdLow & U64, "spanId": r.spanId & U64}
            for r in (s.references or [])
        ],
        "tags": [tag(t) for t in (s.tags or [])],
        "logs": [{"timestamp": lg.timestamp, "fields": [tag(t) for t in (lg.fields or [])]}
                 for lg in (s.logs or [])],
    }


def decode(data):
    buf = TTransport.TMemoryBuffer(data)
    p = TCompactProtocol.TCompactProtocol(buf)
    name, mtype, seqid = p.readMessageBegin()
    args = Agent.emitBatch_args()
    args.read(p)
    p.readMessageEnd()
    batch = args.batch
    return {
        "size": len(data),
        "trailing": len(data) - buf._buffer.tell(),
        "message": name,
        "oneway": mtype == 4,
        "seqid": seqid,
        "service": batch.process.serviceName,
        "process_tags": [tag(t) for t in (batch.process.tags or [])],
        "spans": [span(s) for s in batch.spans],
    }


def main():
    stdin = sys.stdin.buffer
    while True:
        frame = stdin.read(4)
        if len(frame) < 4:
            return
        (n,) = struct.unpack(">I", frame)
        data = stdin.read(n)
        try:
            out = decode(data)
        except Exception as e:  # a datagram Jaeger could not read: say so
            out = {"size": len(data), "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out))


main()
