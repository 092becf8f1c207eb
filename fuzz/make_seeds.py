#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (run from fuzz/; needs ffmpeg).

corpus/mp4_probe/: the ftyp+moov header of small ffmpeg files (one per codec and container
layout, including the QuickTime version-1 and version-2 sound descriptions), and the headers
that froze the mp4 crate (a moov child of size 0, a zeroed moov body).
corpus/asset_url/: URLs that are valid, and ones that broke a rule.
corpus/h264_leads/: the avcC and first access units of small x264 streams (B-frames used as
references, several references, no B-frames), in the target's length-prefixed form; plus
(committed, not written here) the input that made h264-reader's own avcC reader panic.
"""
import os
import struct
import subprocess
import tempfile

VIDEO = ["-f", "lavfi", "-i", "testsrc=size=64x36:rate=5:duration=2"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast"]
FILES = {
    "avc1.mp4": H264 + ["-c:a", "aac"],
    "avc3.mp4": H264 + ["-tag:v", "avc3", "-c:a", "aac"],
    "hvc1.mp4": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                 "-tag:v", "hvc1", "-c:a", "aac"],
    "mp4v.mp4": ["-c:v", "mpeg4", "-c:a", "aac"],
    "opus.mp4": H264 + ["-c:a", "libopus"],
    "aac-v1.mov": H264 + ["-c:a", "aac", "-f", "mov"],
    "in24-le.mov": H264 + ["-c:a", "pcm_s24le", "-f", "mov"],
    "faststart.mp4": H264 + ["-c:a", "aac", "-movflags", "+faststart"],
    "fragmented.mp4": H264 + ["-c:a", "aac", "-movflags", "frag_keyframe+empty_moov"],
}
RATES = {"opus.mp4": 48000}


def boxes(data, start, end):
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        elif size == 0:
            size = end - at
        yield at, size, kind
        at += size


def header(data):
    """ftyp and moov, and the first moof of a fragmented file."""
    out = b""
    for at, size, kind in boxes(data, 0, len(data)):
        if kind in (b"ftyp", b"moov") or (kind == b"moof" and b"moof" not in out):
            out += data[at:at + size]
    return out


def main():
    mp4 = "corpus/mp4_probe"
    os.makedirs(mp4, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in FILES.items():
            path = os.path.join(tmp, name)
            rate = RATES.get(name, 16000)
            audio = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration=2"]
            subprocess.run(["ffmpeg", "-v", "error", "-y"] + VIDEO + audio + ["-ac", "1"]
                           + args + [path], check=True)
            with open(path, "rb") as f:
                data = header(f.read())
            with open(os.path.join(mp4, name), "wb") as f:
                f.write(data)
    with open(os.path.join(mp4, "faststart.mp4"), "rb") as f:
        original = f.read()
    moov = next(at for at, _, kind in boxes(original, 0, len(original)) if kind == b"moov")
    moov_size = struct.unpack(">I", original[moov:moov + 4])[0]
    for at, _, kind in boxes(original, moov + 8, moov + moov_size):
        if kind in (b"mvhd", b"trak", b"udta"):
            frozen = bytearray(original)
            frozen[at:at + 4] = b"\0\0\0\0"
            with open(os.path.join(mp4, f"freeze-{kind.decode()}-size-0.mp4"), "wb") as f:
                f.write(frozen)
    zeroed = bytearray(original)
    zeroed[moov + 8:moov + moov_size] = bytes(moov_size - 8)
    with open(os.path.join(mp4, "freeze-zeroed-moov.mp4"), "wb") as f:
        f.write(zeroed)

    urls = "corpus/asset_url"
    os.makedirs(urls, exist_ok=True)
    seeds = [
        "s3://media-a/films/a.mp4", "s3://shared/trailers/t.mp4", "s3://../media-a/long.mp4",
        "s3://%2e%2e/media-a/long.mp4", "s3://media a/long.mp4", "s3://media?x/a.mp4",
        "s3://media/a//b.mp4", "s3://192.168.0.1/a.mp4", "s3://xn--a/b.mp4",
        "file:///srv/media/tenant-a/My%20Film.mp4", "file://localhost/srv/media/a.mp4",
        "file:///srv/media/sub/../a.mp4", "file:///srv/media/a%2Fb.mp4", "file:///a%00.mp4",
        "memory:///a.mp4", "http://x/a.mp4",
    ]
    for i, url in enumerate(seeds):
        with open(os.path.join(urls, f"seed-{i:02}"), "w") as f:
            f.write(url)


def dump_bytes(dump):
    """The bytes of an ffprobe hex dump."""
    out = bytearray()
    for line in dump.splitlines():
        if ": " in line:
            out += bytes.fromhex(line.split(": ", 1)[1].split("  ")[0].replace(" ", ""))
    return bytes(out)


def h264_leads():
    import json
    leads = "corpus/h264_leads"
    os.makedirs(leads, exist_ok=True)
    encoders = {
        "veryfast": ["-preset", "veryfast"],
        "four-refs": ["-x264-params", "ref=4:bframes=3:weightp=2:b-adapt=2"],
        "no-b": ["-preset", "veryfast", "-bf", "0"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in encoders.items():
            path = os.path.join(tmp, name + ".mp4")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                            "testsrc2=size=64x36:rate=10:duration=3", "-c:v", "libx264"]
                           + options + [path], check=True)
            probe = json.loads(subprocess.run(
                ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                 "stream=extradata:packet=data", "-show_data", "-show_packets", "-of", "json",
                 path], check=True, capture_output=True, text=True).stdout)
            parts = [dump_bytes(probe["streams"][0]["extradata"])]
            parts += [dump_bytes(p["data"]) for p in probe["packets"][:16]]
            with open(os.path.join(leads, name), "wb") as f:
                for part in parts:
                    f.write(struct.pack(">H", len(part)) + part)


if __name__ == "__main__":
    main()
    h264_leads()
