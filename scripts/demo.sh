#!/usr/bin/env bash
# The main job on a sample clip: makes a 1 s 960x540 23.976 fps clip with
# audio and timecode, renders it with the classical draft engine to a UHD
# ProRes 422 HQ master, and shows what came out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p demo
.venv/bin/python -m cinescale_post.testing sample demo/sample.mov
.venv/bin/cinescale probe demo/sample.mov
.venv/bin/cinescale render demo/sample.mov -o demo/sample_uhd.mov --preset uhd-draft --overwrite
.venv/bin/cinescale probe demo/sample_uhd.mov
cat <<MSG

Done. The UHD ProRes 422 HQ master is at: $(pwd)/demo/sample_uhd.mov
(manifest: demo/sample_uhd.mov.manifest.json)

To render with a real diffusion model (CineScale), point --model at local weights:
  .venv/bin/cinescale render plate.mov -o out/sh010.####.exr --preset sdxl-uhd-refine --model /models/sdxl-base
See README.md ("Using a real model"). This tool never downloads weights.
MSG
