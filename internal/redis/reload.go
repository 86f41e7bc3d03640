package redis

import (
	"context"
	"errors"
	"net"

	goredis "github.com/redis/go-redis/v9"
)

// reloadOnFailure has a cluster client reload its view of the cluster
// (which node serves which slots) whenever a command fails, not only on a
// MOVED reply. go-redis otherwise learns of a failover from a MOVED, which
// a dead master never sends, or after ClusterStateReloadInterval (60 s):
// meanwhile every read of the dead master's slots would fail over to
// PostgreSQL although its replica had long been promoted. go-redis runs one
// reload at a time, at most one every 200 ms.
type reloadOnFailure struct{ cc *goredis.ClusterClient }

func (h reloadOnFailure) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (h reloadOnFailure) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.reloadAfter(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		h.reloadAfter(ctx, err)
		return err
	}
}

func (h reloadOnFailure) reloadAfter(ctx context.Context, err error) {
	if err == nil || errors.Is(err, goredis.Nil) || errors.Is(err, context.Canceled) {
		return
	}
	h.cc.ReloadState(ctx)
}
