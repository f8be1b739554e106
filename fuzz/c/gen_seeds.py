#!/usr/bin/env python3
"""Write the seed corpora of the C harnesses (fuzz/c/corpus/NAME/seed-*).

Each seed is a small, readable program in the harness's input language
(see the op switch in sqe_stream.c and ring_scribble.c): it sizes the ring,
then runs steps that reach the interesting paths (subscribe, events inline
and in slots, overflow into the backlog, post and call to the ring's own
channel, writeback, slot releases good and bad, garbage SQEs). The fuzzer
mutates from there. Run it again after changing an op encoding.
"""
import os
import struct
import sys

# enum aem_op / aem_source and flags, from kmod/uapi/aem.h
OP_NOP, OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_WRITEBACK, OP_POST, OP_CALL, OP_TIMER_SET, OP_GEN_SET = range(8)
SRC_MSG = 2
SQE_F_SLOT, SQE_F_SILENT = 1, 2


def sqe(opcode=0, flags=0, prio=0, source=0, length=0, user_data=0, target=0, slot=0, arg=0, data=b""):
    return struct.pack("<BBBBIQQII32s", opcode, flags, prio, source, length, user_data, target, slot, arg,
                       data.ljust(32, b"\0"))


def config(sq=3, cq=3, classes=1, slot_size=0, slots=7, send=2, backlog=15):
    # sq/cq: 1 << (1 + v % 5); classes: 1 + v % 4; slot size: 64 << (v % 3)
    return bytes([sq, cq, classes, slot_size, slots, send, backlog])


class Stream:
    """sqe_stream.c ops (op byte % 14)."""

    def __init__(self, **cfg):
        self.b = bytearray(config(**cfg))

    def sqe(self, ctl, raw):
        self.b += bytes([0, ctl]) + raw
        return self

    def submit(self, n=255):
        self.b += bytes([2, n])
        return self

    def drain(self, cls=0, n=63):
        self.b += bytes([3, cls, n])
        return self

    def post(self, pick=0, n=1, length=24, final=False):
        self.b += bytes([4, pick, n - 1, 0xFF if final else 0]) + struct.pack("<H", length)
        return self

    def post_batch(self, pick=0, n=8, length=24):
        self.b += bytes([5, pick, n - 1, length])
        return self

    def release(self, picks):
        self.b += bytes([6, len(picks) - 1]) + bytes(picks)
        return self

    def release_bad(self, values):
        self.b += bytes([7, len(values) - 1]) + b"".join(struct.pack("<I", v) for v in values)
        return self

    def reclaim(self):
        self.b += bytes([8])
        return self

    def flush(self):
        self.b += bytes([9])
        return self

    def subscribe(self, fuzz_source=True, prio=0, channel=0):
        self.b += bytes([10, (1 if fuzz_source else 0) | (prio << 2) | (channel << 4)])
        return self

    def subscribe_timer(self, prio=0, ticks=1, periodic=False):
        self.b += bytes([10, 2 | (prio << 2) | ((ticks - 1) << 4) | (0x40 if periodic else 0)])
        return self

    def subscribe_gen(self, prio=0, n=3, big=False):
        self.b += bytes([10, 3 | (prio << 2) | (n << 4) | (0x40 if big else 0)])
        return self

    def tick(self, half_ticks=4):
        self.b += bytes([12, half_ticks])
        return self

    def gen_step(self):
        self.b += bytes([13])
        return self

    def ready(self, n=1):
        self.b += bytes([11, n])
        return self


class Scribble:
    """ring_scribble.c ops (op byte % 10)."""

    def __init__(self, **cfg):
        self.b = bytearray(config(**cfg))

    def field(self, pick, how, value):
        self.b += bytes([0, 0, pick, how]) + struct.pack("<I", value)
        return self

    def anywhere(self, off, how, value):
        self.b += bytes([0, 2]) + struct.pack("<I", off) + bytes([how]) + struct.pack("<I", value)
        return self

    def slot_entry(self, idx, how, value):
        self.b += bytes([0, 3, idx, how]) + struct.pack("<I", value)
        return self

    def sqe(self, idx, raw):
        self.b += bytes([2, idx]) + raw
        return self

    def submit(self, n, shift=0):
        self.b += bytes([3]) + struct.pack("<I", n) + bytes([shift])
        return self

    def post(self, n=4, length=24):
        self.b += bytes([4, n - 1]) + struct.pack("<H", length)
        return self

    def drain(self, cls=0, mode=0, head=0):
        self.b += bytes([5, cls, mode]) + (struct.pack("<I", head) if mode % 3 == 2 else b"")
        return self

    def reclaim(self):
        self.b += bytes([6])
        return self

    def flush(self):
        self.b += bytes([7])
        return self

    def ready(self, n=1):
        self.b += bytes([8, n])
        return self

    def good(self, v=3):
        self.b += bytes([9, v])
        return self


# field picks: (ring << 3) | field; ring 0 = SQ, 1 = slot ring, 2.. = CQ classes
SQ, SLOTRING, CQ0 = 0, 1, 2
HEAD, TAIL, MASK, ENTRIES, FLAGS, DROPPED = range(6)


def pick(ring, field):
    return (ring << 3) | field


def stream_seeds():
    s = {}
    s["events-inline-and-slot"] = (
        Stream().subscribe().submit().drain()
        .post(n=3, length=24).drain().post(n=3, length=100).drain().release([0, 1, 2]).reclaim()
        .post_batch(n=5, length=20).drain().ready(1))
    s["overflow-backlog"] = (
        Stream(cq=1, backlog=7).subscribe().submit().drain()
        .post(n=16, length=24).ready(3).flush().drain().flush().drain().flush().drain())
    s["post-own-channel"] = (
        Stream().subscribe(fuzz_source=False, channel=1).submit().drain()
        .sqe(2 | 8, sqe(OP_POST, target=1, length=8, data=b"ping-one"))
        .sqe(2 | 4 | 8, sqe(OP_POST, flags=SQE_F_SLOT, target=1, slot=0, length=40))
        .submit().drain().release([0]).reclaim())
    s["call-and-writeback"] = (
        Stream().subscribe(fuzz_source=False, channel=0).submit().drain()
        .sqe(2 | 8, sqe(OP_CALL, target=0, length=4, arg=20, data=b"ask!"))
        .submit().drain()
        .sqe(1 | 4 | 8, sqe(OP_WRITEBACK, flags=SQE_F_SLOT, target=1, length=6))
        .submit().drain())
    s["writeback-to-source"] = (
        Stream().subscribe().submit().drain().post(n=1, length=24).drain()
        .sqe(1 | 8, sqe(OP_WRITEBACK, target=1, length=8, data=b"newvalue"))
        .sqe(1 | 8, sqe(OP_UNSUBSCRIBE, target=0)).submit().drain().post(n=2).drain())
    s["garbage-sqes"] = (
        Stream(sq=2)
        .sqe(0, sqe(0xEE, flags=0xFF, prio=9, source=77, length=0xFFFFFFFF, target=0xDEADBEEF, slot=0xFFFFFFFF, arg=3))
        .sqe(0, sqe(OP_SUBSCRIBE, source=9))
        .sqe(0, sqe(OP_WRITEBACK, flags=SQE_F_SLOT, target=(1 << 56) | 5, slot=3, length=1 << 20))
        .sqe(0, sqe(OP_NOP, flags=SQE_F_SILENT))
        .sqe(0, sqe(OP_POST, target=(0xFFFF << 32) | 9, length=33))
        .sqe(0, sqe(OP_TIMER_SET, target=(1 << 56) | 1))
        .submit(3).drain().submit().drain())
    s["bad-releases"] = (
        Stream(send=3).subscribe().submit().drain().post(n=2, length=90).drain()
        .release_bad([0xFFFFFFFF, 1, 0x41, 3]).release([0]).reclaim().submit().drain())
    s["silent-and-final"] = (
        Stream(classes=2).subscribe(prio=1).submit().drain(0)
        .sqe(8, sqe(OP_NOP, flags=SQE_F_SILENT)).sqe(8, sqe(OP_NOP))
        .submit().post(n=2, final=True).drain(1).drain(0))
    s["timers"] = (
        Stream(classes=2).subscribe_timer(prio=0, ticks=1).subscribe_timer(prio=1, ticks=2, periodic=True)
        .submit().drain(0).drain(1).tick(4).drain(0).drain(1).tick(4).tick(4).drain(1)
        .sqe(1 | 8, sqe(OP_TIMER_SET, target=1, data=struct.pack("<QQ", 1 << 21, 0))).submit()
        .tick(8).drain(0).drain(1))
    s["generator"] = (
        Stream(cq=2, backlog=3).subscribe_gen(n=5).subscribe_gen(n=2, big=True).submit().drain()
        .gen_step().drain().gen_step().gen_step().drain().release([0, 1, 2, 3]).reclaim().gen_step().drain()
        .sqe(1 | 8, sqe(OP_GEN_SET, target=0, data=struct.pack("<QQII", 0, 4, 1, 16))).submit().gen_step().drain())
    s["call-times-out"] = (
        Stream().subscribe(fuzz_source=False, channel=2).submit().drain()
        .sqe(2 | 8, sqe(OP_CALL, target=2, length=3, arg=1, data=b"hey"))
        .submit().tick(8).drain().tick(8).drain())
    return {k: bytes(v.b) for k, v in s.items()}


def stream_fixed():
    """Inputs that broke an invariant and were fixed: regression inputs in corpus/."""
    s = {}
    # More results than CQ ring + backlog hold: valid NOPs consumed, their
    # results dropped, neither answered nor refused. 4-entry SQ, 2-entry CQ,
    # backlog bound 1; three batches of 4 NOPs submitted before any reaping.
    st = Stream(sq=1, cq=0, backlog=0)
    for _ in range(3):
        for _ in range(4):
            st.sqe(8, sqe(OP_NOP))
        st.submit()
    s["result-dropped-past-backlog"] = st.drain().flush().drain().flush().drain()
    return {k: bytes(v.b) for k, v in s.items()}


def stream_pending():
    """Inputs that break an invariant on main. They wait in fuzz/c/pending/NAME
    until the fix lands, then move to stream_fixed()."""
    s = {}
    # A result waits behind an event that waits for a slot the user holds:
    # one delivery slot, held by a call's request; a second call's request
    # waits in the backlog for it; the first call expires and the handler's
    # writeback to it is refused, but that refusal (and the timeout) queue
    # behind the slot-starved request. The handler keeps the slot until it
    # learns whether the writeback took it: neither side moves.
    s["result-behind-slot-starved-event"] = (
        Stream(sq=3, cq=3, slots=0, send=2, backlog=15)
        .subscribe(fuzz_source=False, channel=0).submit().drain()
        .sqe(2 | 8, sqe(OP_CALL, target=0, length=4, arg=1, data=b"one!"))
        .submit().drain()
        .sqe(2 | 8, sqe(OP_CALL, target=0, length=4, arg=50, data=b"two!"))
        .submit().tick(8)
        .sqe(1 | 4 | 8, sqe(OP_WRITEBACK, flags=SQE_F_SLOT, target=1, length=4))
        .submit().drain())
    return {k: bytes(v.b) for k, v in s.items()}


def scribble_seeds():
    s = {}
    s["good-ring-only"] = Scribble().good(3).good(0x85).good(7)
    s["sq-tail-far-ahead"] = (
        Scribble().field(pick(SQ, TAIL), 0, 0x7FFFFFFF).submit(0xFFFFFFFF).good()
        .field(pick(SQ, TAIL), 1, 0xFE).submit(5).good())
    s["sq-tail-backwards"] = (
        Scribble().sqe(0, sqe(OP_NOP)).field(pick(SQ, TAIL), 1, 1).submit(1)
        .field(pick(SQ, TAIL), 1, 0xFF).submit(4).field(pick(SQ, HEAD), 2, 0).submit(8).good())
    s["cq-head-beyond-tail"] = (
        Scribble(cq=1).post(n=8).drain(0, 1 | (40 << 2)).post(n=8).flush()
        .drain(0, 2, 0x80000000).post(n=4).flush().drain(0, 0).flush().good())
    s["mask-and-entries"] = (
        Scribble().field(pick(SQ, MASK), 0, 0xFFFFFFFF).field(pick(SQ, ENTRIES), 0, 0)
        .field(pick(CQ0, MASK), 0, 0xFFFF).field(pick(CQ0, ENTRIES), 3, 1)
        .sqe(1, sqe(OP_NOP)).field(pick(SQ, TAIL), 1, 2).submit(2).post(n=9).drain().good())
    s["slot-ring-garbage"] = (
        Scribble(slot_size=1).post(n=4, length=100).drain(0, 0)
        .slot_entry(0, 0, 0xFFFFFFFF).slot_entry(1, 0, 0).slot_entry(2, 0, 3)
        .field(pick(SLOTRING, TAIL), 0, 3).reclaim()
        .field(pick(SLOTRING, TAIL), 0, 0x40000000).reclaim().post(n=4, length=100).good())
    s["random-words"] = (
        Scribble().anywhere(0, 0, 0xFFFFFFFF).anywhere(64, 1, 0x7F).anywhere(128, 2, 0)
        .anywhere(200, 3, 1).post(n=5).submit(64).flush().drain(0, 1).good())
    return {k: bytes(v.b) for k, v in s.items()}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, seeds, where, prefix in (("sqe_stream", stream_seeds(), "corpus", "seed-"),
                                       ("sqe_stream", stream_fixed(), "corpus", "crash-"),
                                       ("sqe_stream", stream_pending(), "pending", "crash-"),
                                       ("ring_scribble", scribble_seeds(), "corpus", "seed-")):
        d = os.path.join(here, where, name)
        os.makedirs(d, exist_ok=True)
        for k, v in seeds.items():
            with open(os.path.join(d, prefix + k), "wb") as f:
                f.write(v)
        print(f"{name}: {len(seeds)} seeds in {d}", file=sys.stderr)


if __name__ == "__main__":
    main()
