"""The data pattern the example programs write (examples/common/pattern.hpp),
regenerated on the host to check disk images after QEMU exits, and the
per-sector background the images hold before a run. Keep in step with the C++."""

MASK = (1 << 64) - 1


def mix(x):
    """64-bit MurmurHash3 finaliser, as pattern.hpp's mix()."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK
    x ^= x >> 33
    return x


def pattern(seed, offset, length):
    """The bytes fill_pattern(seed) writes at device byte `offset`."""
    out = bytearray(length)
    base = (seed * 0x9E3779B97F4A7C15) & MASK
    for i in range(0, length, 8):
        out[i:i + 8] = mix((base + (offset + i) // 8) & MASK).to_bytes(8, "little")
    return bytes(out)


def background(tag):
    """A per-sector tag, so a write that lands in the wrong place is visible too."""
    def fill(offset, length):
        out = bytearray()
        for sector in range(offset // 512, (offset + length) // 512):
            out += (b"%s %08d " % (tag, sector)).ljust(512, b"-")
        return bytes(out)
    return fill


def check_images(r, disks, writes):
    """Each disk image equals its background fill with every (disk, lba,
    blocks, seed) write of `writes` laid over it, byte for byte; reports the
    first differing byte through the run `r` otherwise."""
    for d in disks:
        want = bytearray(d.fill(0, d.size))
        for (dd, lba, blocks, seed) in writes:
            if dd is d:
                want[lba * 512:(lba + blocks) * 512] = pattern(seed, lba * 512, blocks * 512)
        got = r.disk(d.name)
        if not r.check(got == bytes(want), f"{d.name}: image differs from the expected bytes"):
            first = next(i for i in range(len(want)) if got[i] != want[i])
            r.fail(f"{d.name}: first differing byte at offset {first} (sector {first // 512})")
