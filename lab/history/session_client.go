package history

import "context"

// Session is a client that reads its writes: each GET carries the newest
// token it holds for the key, its own writes' or its reads'.
type Session struct {
	*Client
	newest map[string]Op
}

// NewSession starts a session that holds no token yet.
func NewSession(c *Client) *Session { return &Session{Client: c, newest: map[string]Op{}} }

// Write sends a write as Client.Write does and keeps its token.
func (s *Session) Write(ctx context.Context, kind Kind, key, value string, wait bool) Op {
	return s.keep(s.Client.Write(ctx, kind, key, value, wait))
}

// Get reads key with the newest token the session holds for it.
func (s *Session) Get(ctx context.Context, key string) Op {
	return s.keep(s.Client.Get(ctx, key, s.newest[key].Token))
}

func (s *Session) keep(o Op) Op {
	if o.Token != "" && (o.Outcome == Done || o.Outcome == Accepted) && o.Version.Newer(s.newest[o.Key].Version) {
		s.newest[o.Key] = o
	}
	return o
}
