#!/usr/bin/env bash
# Build SeaweedFS's weed binary, the S3 server the storage tests run
# against, once per version, and print its path. The binary is cached
# under ${XDG_CACHE_HOME:-$HOME/.cache}/mirrord/weed-VERSION, where
# internal/s3test looks for it (or set MIRRORD_WEED to a binary of your own).
#
# The module has replace directives, so `go install MODULE@VERSION` refuses
# it: we build ./weed from inside the downloaded module's directory instead.
set -euo pipefail
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-modcacherw CGO_ENABLED=0

module=github.com/seaweedfs/seaweedfs
# Keep in step with internal/s3test.WeedVersion.
version=v0.0.0-20261109003541-7506e5f91cd6
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mirrord
bin=$cache/weed-$version

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

start=$(date +%s)
dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir/weed" ]; then
	echo "seaweedfs.sh: go mod download $module@$version gave no module directory" >&2
	exit 1
fi
mkdir -p "$cache"
tmp=$(mktemp "$cache/weed-build.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# -trimpath and -s -w: a smaller binary; nothing here debugs weed itself.
(cd "$dir" && go build -trimpath -ldflags '-s -w' -o "$tmp" ./weed)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT
echo "seaweedfs.sh: built weed $version in $(($(date +%s) - start))s" >&2
echo "$bin"
