# syntax=docker/dockerfile:1
# docker-compose.ha.yml's PostgreSQL nodes and etcd members, one image
# (kvstack-patroni:local; each service picks its program): PostgreSQL as
# docker-compose.yml runs it (the official image, the same release, its
# Debian variant: Debian's packages install on it), Patroni and etcd as the
# native HA topology runs them (Debian 12's patroni 3.0.2 and etcd-server
# 3.4.23, the releases deploy/composetest boots this file's configuration
# with). Pinned: Patroni's version is the one the test proves, not whatever
# the PostgreSQL project's own repository (also configured in the image)
# serves next.
FROM postgres:16.10-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends patroni=3.0.2-1 python3-etcd etcd-server \
 && rm -rf /var/lib/apt/lists/*
