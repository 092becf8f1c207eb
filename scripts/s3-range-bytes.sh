#!/usr/bin/env bash
# What reading an asset over a presigned S3 URL (ffmpeg's http protocol, seekable range requests)
# would fetch, against today's download of the whole object: each pass of the audio-first adbreaks
# analysis that reads the asset, run by ffmpeg/ffprobe at the verbose level, which prints the bytes
# each input read ("Statistics: N bytes read"). The audio pass runs over a presigned URL of a local
# moto server and over the local file; the others over the local file.
# Usage: scripts/s3-range-bytes.sh [ASSET] (default: the bench's 30-minute asset, made by
# `cargo bench --bench adbreaks_cost`). Needs scripts/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
asset="${1:-target/bench-media/adbreaks-1080p-300s-v1-x6.mp4}"
moto="${TEST_DEPS_DIR:-$PWD/target/test-deps}/moto/bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$moto/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do :; done
url=$("$moto/python" - "http://127.0.0.1:$port" "$asset" <<'EOF'
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
s3.create_bucket(Bucket="bench")
s3.upload_file(sys.argv[2], "bench", "asset.mp4")
print(s3.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": "asset.mp4"}))
EOF
)
read_bytes() { grep -o 'Statistics: [0-9]* bytes read' | awk '{s += $2} END {print s + 0}'; }
echo "object: $(stat -c %s "$asset") bytes (today: downloaded whole)"
audio=(-map 0:a:0 -af silencedetect=n=-50dB:d=0.48 -f null -)
echo "audio pass over the presigned URL: $(ffmpeg -v verbose -vn -sn -dn -i "$url" "${audio[@]}" 2>&1 | read_bytes) bytes"
echo "audio pass over the file: $(ffmpeg -v verbose -vn -sn -dn -i "$asset" "${audio[@]}" 2>&1 | read_bytes) bytes"
echo "keyframe index (ffprobe packet scan) over the file: $(ffprobe -v verbose -select_streams V:0 \
  -show_entries packet=pts_time,flags -of csv=p=0 "$asset" 2>&1 >/dev/null | read_bytes) bytes"
