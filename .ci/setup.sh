#!/usr/bin/env bash
# Installs everything optax_cdr and its experiments need on a fresh Debian
# machine with Python 3.11+ (the pinned jax, numpy, scipy, ... need it; the
# package itself allows 3.10): the offline Fashion-MNIST files and the package
# with its experiment and test extras, at the exact versions the suite and the
# committed results were measured with (.ci/constraints.txt; .ci/newest.sh
# checks the newest versions instead).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python -m pip install -q --upgrade pip
python -m pip install -q -c .ci/constraints.txt -e ".[test]"
