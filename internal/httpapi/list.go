package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/kvstack/kvstack/internal/kv"
)

type listItem struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type listPage struct {
	Items      []listItem `json:"items"`
	NextCursor *string    `json:"next_cursor"`
}

// listKeys serves GET /api/all. With ?limit=N it returns one page and the
// cursor of the next; without, it streams every live pair, fetching
// ListPageSize rows at a time by key, so that neither the server's memory nor
// a database connection is held in proportion to the store. It shows only
// the keys under the prefixes the token may both list and read; a token
// that may list none gets 403.
func (a *api) listKeys(w http.ResponseWriter, r *http.Request) {
	prefixes, err := a.auth.Listable(principal(r))
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	q, err := queryOf(r)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	limit, err := a.parseLimit(q)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	after, err := a.parseCursor(q)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	if limit > 0 {
		a.listPage(w, r, prefixes, after, limit)
		return
	}
	a.listAll(w, r, prefixes, after)
}

func (a *api) parseLimit(q url.Values) (int, error) {
	s, ok := q["limit"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(s[0])
	if len(s) > 1 || err != nil || n < 1 || n > a.cfg.MaxListLimit {
		return 0, &badRequest{code: "invalid_limit", msg: "limit must be a whole number from 1 to " + strconv.Itoa(a.cfg.MaxListLimit)}
	}
	return n, nil
}

func (a *api) parseCursor(q url.Values) (string, error) {
	s, ok := q["cursor"]
	if !ok {
		return "", nil
	}
	bad := &badRequest{code: "invalid_cursor", msg: "cursor is not one this API returned"}
	if len(s) > 1 {
		return "", bad
	}
	key, err := base64.RawURLEncoding.DecodeString(s[0])
	if err != nil || len(key) == 0 {
		return "", bad
	}
	return string(key), nil // the service validates it as a key
}

func encodeCursor(key string) *string {
	c := base64.RawURLEncoding.EncodeToString([]byte(key))
	return &c
}

func (a *api) listPage(w http.ResponseWriter, r *http.Request, prefixes []string, after string, limit int) {
	entries, err := a.svc.List(r.Context(), kv.ListRequest{Prefixes: prefixes, After: after, Limit: limit + 1})
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	page := listPage{Items: make([]listItem, 0, min(len(entries), limit))}
	if len(entries) > limit {
		entries = entries[:limit]
		page.NextCursor = encodeCursor(entries[limit-1].Key)
	}
	for _, e := range entries {
		page.Items = append(page.Items, listItem{e.Key, e.Value})
	}
	writeJSON(w, r, http.StatusOK, page)
}

// listAll streams {"items":[…],"next_cursor":null}. The first page is read
// before the status is sent, so an unreachable store is still a clean 503; a
// failure later aborts the response, which the client sees as truncated
// rather than as a complete listing.
func (a *api) listAll(w http.ResponseWriter, r *http.Request, prefixes []string, after string) {
	entries, err := a.svc.List(r.Context(), kv.ListRequest{Prefixes: prefixes, After: after, Limit: a.cfg.ListPageSize})
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return // the headers are known; reading the rest would be for nothing
	}
	rc := http.NewResponseController(w)
	buf := []byte(`{"items":[`)
	for len(entries) > 0 {
		for i, e := range entries {
			if i > 0 || len(buf) == 0 {
				buf = append(buf, ',')
			}
			item, err := json.Marshal(listItem{e.Key, e.Value})
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			buf = append(buf, item...)
		}
		if _, err := w.Write(buf); err != nil {
			panic(http.ErrAbortHandler) // the client is gone
		}
		buf = buf[:0]
		if err := rc.Flush(); err != nil {
			panic(http.ErrAbortHandler)
		}
		if len(entries) < a.cfg.ListPageSize {
			break
		}
		entries, err = a.svc.List(r.Context(), kv.ListRequest{Prefixes: prefixes, After: entries[len(entries)-1].Key, Limit: a.cfg.ListPageSize})
		if err != nil {
			a.logFor(r).Warn().Err(err).Msg("listing aborted midway")
			panic(http.ErrAbortHandler)
		}
	}
	// buf still holds the opening when there was nothing to list.
	_, _ = w.Write(append(buf, `],"next_cursor":null}`+"\n"...))
}
