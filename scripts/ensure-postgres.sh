#!/usr/bin/env bash
# Installs the PostgreSQL 15 server binaries (Debian's postgresql-15) when
# they are missing, and makes sure the postgres OS user exists. With
# --netns it also installs iproute2 and nftables (the partition tests).
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PGBIN/pg_ctl" ] || [ ! -x "$PGBIN/psql" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL 15 is missing: run as root, or: sudo apt-get install -y postgresql-15" >&2
    exit 1
  fi
  echo "installing postgresql-15 ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-15 >/dev/null
fi
if [ "${1:-}" = "--netns" ] && { ! command -v ip >/dev/null || ! command -v nft >/dev/null; }; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing iproute2 and nftables ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iproute2 nftables >/dev/null
  else
    echo "the partition tests need iproute2 and nftables (and root)" >&2
  fi
fi
if ! id postgres >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    useradd --system --home-dir /var/lib/postgresql --create-home --shell /bin/bash postgres
  else
    echo "the postgres OS user is missing: run as root once" >&2
    exit 1
  fi
fi
