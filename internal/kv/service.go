package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// Store is the durable state: PostgreSQL in production.
type Store interface {
	// Get returns the key's entry, which may be a tombstone, or ErrNotFound
	// when the store holds nothing for it.
	Get(ctx context.Context, key string) (Entry, error)
	// List returns up to limit live entries whose keys start with prefix
	// and are greater than after, in key order.
	List(ctx context.Context, prefix, after string, limit int) ([]Entry, error)
}

// Cache is the read-through cache: Redis in production.
type Cache interface {
	// Get returns the cached entry (possibly a tombstone) or ErrCacheMiss.
	Get(ctx context.Context, key string) (Entry, error)
	// Fill caches e unless the cache already holds the same or a newer
	// version of the key; it reports whether e was stored.
	Fill(ctx context.Context, e Entry) (bool, error)
}

// Publisher makes an accepted operation durable: RabbitMQ in production.
// A nil error means the broker confirmed the message.
type Publisher interface {
	Publish(ctx context.Context, op Op) error
}

// Service serves reads cache-aside and turns writes into queued operations.
// Its errors never carry a key or a value: they reach the logs, which must
// hold neither.
type Service struct {
	store  Store
	cache  Cache
	pub    Publisher
	limits Limits
	log    zerolog.Logger
	now    func() time.Time

	// loads makes concurrent misses on one key share one store query.
	loads singleflight.Group
	// loadTimeout bounds a shared load, which runs detached from any one
	// caller's context so that one caller giving up does not fail the rest.
	loadTimeout time.Duration

	waiters Waiters
	wait    WaitConfig
	// waitsEnded is closed by EndWaits, when the process drains.
	waitsEnded chan struct{}
	endWaits   sync.Once
}

// Option configures a Service.
type Option func(*Service)

// WithWaiters has waits driven by w's news, bounded by cfg. Without it,
// waits rest on polling the store every DefaultWaitConfig().Poll.
func WithWaiters(w Waiters, cfg WaitConfig) Option {
	return func(s *Service) { s.waiters, s.wait = w, cfg }
}

// NewService wires the service to its dependencies.
func NewService(store Store, cache Cache, pub Publisher, limits Limits, log zerolog.Logger, opts ...Option) *Service {
	s := &Service{
		store: store, cache: cache, pub: pub, limits: limits, log: log,
		now: time.Now, loadTimeout: 5 * time.Second,
		waiters: pollOnly{}, wait: DefaultWaitConfig(),
		waitsEnded: make(chan struct{}),
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// The HTTP edge parses each request once into one of the three requests
// below and hands it over whole: the service owns the validation of what
// it holds (Limits) and the bound of a wait (WaitConfig), so the edge
// never asks for either.

// ReadRequest is a read of one key.
type ReadRequest struct {
	Key string
	// MinVersion, when set, asks for a state at least that new (a version
	// the client was given), waiting for it (GetAtLeast).
	MinVersion *Version
	// Timeout is the wait's bound the client asked for; nil: the
	// configured one. WaitConfig.Bound caps it.
	Timeout *time.Duration
	// WithWriter asks who wrote the state too, which the store alone
	// keeps (GetWritten).
	WithWriter bool
}

// Read serves r: GetWritten, GetAtLeast or Get.
func (s *Service) Read(ctx context.Context, r ReadRequest) (Read, error) {
	switch {
	case r.WithWriter:
		return s.GetWritten(ctx, r.Key)
	case r.MinVersion != nil:
		return s.GetAtLeast(ctx, r.Key, *r.MinVersion, s.wait.Bound(r.Timeout))
	}
	return s.Get(ctx, r.Key)
}

// WriteRequest is a put or a delete of one key.
type WriteRequest struct {
	Kind  Kind
	Key   string
	Value string // a put's; empty for a delete
	// Wait asks to answer once the write is applied (PutApplied), for at
	// most Timeout (nil: the configured bound), capped by WaitConfig.Max.
	Wait    bool
	Timeout *time.Duration
}

// Write accepts w; a write that does not wait answers Pending once it is
// durable in the broker.
func (s *Service) Write(ctx context.Context, w WriteRequest) (Write, error) {
	op := Op{Kind: w.Kind, Key: w.Key, Value: w.Value}
	if w.Wait {
		return s.acceptApplied(ctx, op, s.wait.Bound(w.Timeout))
	}
	op, err := s.accept(ctx, op)
	if err != nil {
		return Write{}, err
	}
	return Write{Op: op, Status: Pending}, nil
}

// ListRequest is a page of a listing.
type ListRequest struct {
	// Prefixes are the prefixes whose keys may be listed: sorted, none a
	// prefix of another (as auth.Authenticator.Listable gives them).
	Prefixes []string
	// After is the key the page starts after (a cursor); "" from the
	// start.
	After string
	Limit int
}

// Read is the answer to a Get.
type Read struct {
	Entry  Entry
	Source Source
}

// Get returns the live value of key: from the cache when it holds the key,
// else from the store, filling the cache. A cache that fails degrades reads
// to the store; it does not fail them. A deleted key is a *NotFoundError
// carrying the delete's version.
func (s *Service) Get(ctx context.Context, key string) (Read, error) {
	if err := s.limits.ValidateKey(key); err != nil {
		return Read{}, err
	}
	e, err := s.cache.Get(ctx, key)
	lookup := LookupOf(err)
	switch lookup {
	case Hit:
		return answer(e, SourceRedis)
	case CacheFailed:
		s.cacheFailed(err)
	}
	cacheUp := lookup != CacheFailed

	v, err, _ := s.loads.Do(key, func() (any, error) {
		return s.load(ctx, key, cacheUp)
	})
	if err != nil {
		return Read{}, err
	}
	return answer(v.(Entry), SourcePostgres)
}

// Lookup is what one read of the cache found. LookupOf decides it, once
// for every reader of the answer: the read path branches on it, and the
// API's cache metrics count it (its String is their result label).
type Lookup int

const (
	// Hit: the cache holds an entry for the key.
	Hit Lookup = iota
	// Miss: the cache answered, and holds nothing for the key.
	Miss
	// CacheFailed: the cache did not answer, or was known down and not
	// asked (ErrCacheDown). A read then goes to the store and does not
	// fill the cache.
	CacheFailed
)

// Lookups lists every lookup result, in order.
var Lookups = []Lookup{Hit, Miss, CacheFailed}

// LookupOf classifies the error of a Cache.Get.
func LookupOf(err error) Lookup {
	switch {
	case err == nil:
		return Hit
	case errors.Is(err, ErrCacheMiss):
		return Miss
	}
	return CacheFailed
}

func (l Lookup) String() string {
	switch l {
	case Hit:
		return "hit"
	case Miss:
		return "miss"
	case CacheFailed:
		return "error"
	}
	return "unknown"
}

// cacheFailed logs a failed cache read, unless the cache was known down
// and not asked: its first failure was logged already.
func (s *Service) cacheFailed(err error) {
	if !errors.Is(err, ErrCacheDown) {
		s.log.Warn().Err(err).Msg("cache read failed; reading from the store")
	}
}

// GetWritten reads key from the store, which alone keeps who wrote each
// state: a read that names its writer (GET ?with=writer). It neither reads
// nor fills the cache.
func (s *Service) GetWritten(ctx context.Context, key string) (Read, error) {
	if err := s.limits.ValidateKey(key); err != nil {
		return Read{}, err
	}
	e, err := s.store.Get(ctx, key)
	if err != nil {
		return Read{}, fmt.Errorf("get: %w", err)
	}
	return answer(e, SourcePostgres)
}

// answer is a read of e: its value, or for a tombstone, not found with the
// delete's version.
func answer(e Entry, src Source) (Read, error) {
	if e.Deleted {
		return Read{}, fmt.Errorf("get: %w", &NotFoundError{Version: e.Version})
	}
	return Read{Entry: e, Source: src}, nil
}

// load reads key from the store and fills the cache with what it found. The
// fill is a versioned compare-and-set, so a load that read an old row cannot
// overwrite a newer value or a delete that the consumer cached meanwhile.
func (s *Service) load(ctx context.Context, key string, fill bool) (Entry, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.loadTimeout)
	defer cancel()
	e, err := s.store.Get(ctx, key)
	if err != nil {
		return Entry{}, fmt.Errorf("get: %w", err)
	}
	if fill {
		if _, err := s.cache.Fill(ctx, e); err != nil {
			s.log.Warn().Err(err).Msg("cache fill failed")
		}
	}
	return e, nil
}

// List returns up to r.Limit live entries after the key r.After, in key
// order, from the keys of r.Prefixes alone. Their keys form ranges in that
// order, so the entries come in key order and the last one's key is a
// cursor; a cursor anywhere else moves where the listing starts, never
// what it may show. A cursor that is not a valid key fails as a
// *ValidationError of field "cursor".
func (s *Service) List(ctx context.Context, r ListRequest) ([]Entry, error) {
	if r.After != "" && s.limits.ValidateCursor(r.After) != nil {
		return nil, errBadCursor
	}
	var out []Entry
	for _, p := range r.Prefixes {
		if len(out) == r.Limit {
			break
		}
		if end, ok := PrefixEnd(p); ok && r.After >= end {
			continue // the cursor is past this prefix's keys
		}
		entries, err := s.store.List(ctx, p, r.After, r.Limit-len(out))
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		out = append(out, entries...)
	}
	return out, nil
}

// errBadCursor is a cursor that is no key, so none the API returned.
var errBadCursor = &ValidationError{Field: "cursor", Reason: "not one this API returned"}

// Put accepts a write of value to key. It returns once the operation is
// durable in the broker.
func (s *Service) Put(ctx context.Context, key, value string) (Op, error) {
	return s.accept(ctx, Op{Kind: KindPut, Key: key, Value: value})
}

// Delete accepts a delete of key. It returns once the operation is durable in
// the broker. Deleting an absent key is accepted too: the tombstone it leaves
// still orders it against other operations on the key.
func (s *Service) Delete(ctx context.Context, key string) (Op, error) {
	return s.accept(ctx, Op{Kind: KindDelete, Key: key})
}

func (s *Service) accept(ctx context.Context, op Op) (Op, error) {
	op.WrittenBy = WriterOf(ctx)
	if err := s.limits.ValidateOp(op); err != nil {
		return Op{}, err
	}
	return s.publish(ctx, op)
}

// publish stamps a valid op with its version and makes it durable.
func (s *Service) publish(ctx context.Context, op Op) (Op, error) {
	op.Version = NewVersion(s.now())
	if err := s.pub.Publish(ctx, op); err != nil {
		return Op{}, fmt.Errorf("%s: %w", op.Kind, err)
	}
	return op, nil
}
