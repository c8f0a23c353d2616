#!/usr/bin/env sh
# Put a kit model file (with a tagging head) into the page's models/ folder with the manifest the
# page checks its cached copy against (file, name, size, SHA-256). Used by scripts/build-web and
# by trunk's post-build hook (Trunk.toml).
#   model.sh MODEL.safetensors OUT_DIR
set -eu
model="$1"
out="$2"
name="$(basename "$model")"
mkdir -p "$out"
cp "$model" "$out/$name"
bytes=$(wc -c < "$model" | tr -d ' ')
sum=$(sha256sum "$model" | cut -d' ' -f1)
printf '{"file": "%s", "name": "%s", "bytes": %s, "sha256": "%s"}\n' \
  "$name" "${name%.safetensors}" "$bytes" "$sum" > "$out/manifest.json"
