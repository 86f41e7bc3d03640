package main

import "time"

// haGapLimit is what the longest gap without a 202 must stay under when a
// RabbitMQ node dies (issue 12; the single node's restart: ~23 s).
const haGapLimit = 2 * time.Second

// haFaults are the HA campaign's faults (make chaos-ha): each kills -9 one
// process of the HA topology; nothing is healed by hand. The engines'
// nodes are picked as the fault strikes (the node the API is connected
// to, a master, the primary).
func haFaults() []fault {
	return []fault{
		{name: "baseline", what: "no fault: load, drain, checks"},
		{
			name: "rabbitmq-api-node-kill9", what: "kill -9 the RabbitMQ node the API replicas are connected to; the publishers move to another node; supervisord restarts the node, which rejoins the cluster",
			inject: killBroker(false), writesMayFail: true, maxGap: haGapLimit,
		},
		{
			name: "rabbitmq-second-node-kill9", what: "once the first is back, kill -9 another RabbitMQ node (the API's if it is another, else the next)",
			inject: killBroker(true), writesMayFail: true, maxGap: haGapLimit,
		},
		{
			name: "redis-master-kill9", what: "kill -9 a Redis master; its replica is promoted; the node comes back as the new master's replica; reads go on from the cache or PostgreSQL",
			inject: killRedisMaster,
		},
		{
			name: "postgres-primary-kill9", what: "kill -9 the PostgreSQL primary's postgres (not its Patroni); Patroni, still holding the leader key, starts it again as the primary and the standby reattaches; consumers keep their batch until the primary takes it",
			inject: killPrimaryPostgres, readsMayFail: true, firstCommit: true,
		},
		{
			name: "postgres-node-loss", what: "kill -9 the PostgreSQL primary's Patroni and postgres together and keep them down (a lost machine); Patroni promotes the synchronous standby once the leader key expires (ttl); after 25 s the node's Patroni starts again and rewinds it into the new primary's standby",
			inject: losePrimary, hold: 25 * time.Second, heal: startLost, readsMayFail: true, firstCommit: true,
		},
		{
			name: "consumer-kill9", what: "kill -9 one of the two consumers under load; its supervisor restarts it",
			inject: kill9("consumer"), hold: 3 * time.Second, killed: []string{"consumer"},
		},
		{
			name: "api1-kill9", what: "kill -9 api1 under load; nginx retries the writes and reads it fails on api2; its supervisor restarts it",
			inject: kill9("api1"), hold: 3 * time.Second, killed: []string{"api1"},
		},
		haRollingRestart(),
	}
}
