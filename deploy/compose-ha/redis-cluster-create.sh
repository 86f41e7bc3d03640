#!/bin/sh
# docker-compose.ha.yml: the one-shot that makes the six Redis nodes one
# cluster, three masters with a replica each (redis-cli --cluster create).
# Nothing to do when the cluster exists (a later `up`). CLUSTER MEET takes
# addresses, not names: each node's name is resolved here; clients are
# told the nodes' names (cluster-announce-hostname), which survive a
# container's new address. Over TLS, verified against the stack's CA, as
# kvstack_cluster (its password in REDISCLI_AUTH): the CLUSTER commands
# and no key.
set -eu
cli="redis-cli --tls --cacert /run/kvstack/ca.pem --user kvstack_cluster"
if $cli -h redis1 cluster info | grep -q '^cluster_state:ok'; then
	echo "the Redis Cluster exists"
	exit 0
fi
nodes=""
for n in redis1 redis2 redis3 redis4 redis5 redis6; do
	nodes="$nodes $(getent hosts "$n" | awk '{ print $1 }'):6379"
done
# shellcheck disable=SC2086 # one word per node, and per option
$cli --cluster create $nodes --cluster-replicas 1 --cluster-yes
until $cli -h redis1 cluster info | grep -q '^cluster_state:ok'; do sleep 1; done
