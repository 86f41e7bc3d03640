package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Client sends kvstack requests and records each in Rec.
type Client struct {
	ID   int
	Base string // the API's base URL (nginx), without a trailing slash
	HTTP *http.Client
	Rec  *Recorder
	// Prepare, when set, is applied to every request before it is sent
	// (credentials, say).
	Prepare func(*http.Request)
}

// Write sends a PUT (kind Put, with value) or a DELETE of key, with
// ?wait=applied when wait, and records it.
func (c *Client) Write(ctx context.Context, kind Kind, key, value string, wait bool) Op {
	op := Op{Client: c.ID, Key: key, Kind: kind, Value: value, Wait: wait}
	q := url.Values{}
	if wait {
		q.Set("wait", "applied")
	}
	var body io.Reader
	method := http.MethodPut
	if kind == Delete {
		method = http.MethodDelete
		q.Set("key", key)
	} else {
		b, _ := json.Marshal(map[string]string{"key": key, "value": value})
		body = bytes.NewReader(b)
	}
	var ans struct {
		Status  string `json:"status"`
		Key     string `json:"key"`
		Version string `json:"version"`
	}
	c.do(ctx, &op, method, "/api?"+q.Encode(), body, &ans)
	switch {
	case op.Outcome == Unknown || op.Outcome == Refused:
	case op.Status == http.StatusAccepted && ans.Status == "accepted":
		op.Outcome = Accepted
	case op.Status == http.StatusOK && wait && (ans.Status == "applied" || ans.Status == "superseded"):
		op.Outcome = Done
	default:
		op.Outcome, op.Err = Unknown, fmt.Sprintf("unexpected answer %d status %q", op.Status, ans.Status)
	}
	if op.Outcome == Done || op.Outcome == Accepted {
		c.version(&op, ans.Version)
	}
	c.Rec.Add(op)
	return op
}

// Get reads key, carrying minToken as ?min_version= when not "", and
// records the read.
func (c *Client) Get(ctx context.Context, key, minToken string) Op {
	op := Op{Client: c.ID, Key: key, Kind: Get, MinToken: minToken}
	q := url.Values{"key": {key}}
	if minToken != "" {
		q.Set("min_version", minToken)
		if v, err := VersionOf(minToken); err == nil {
			op.MinVersion = v
		}
	}
	var ans struct {
		Value   string  `json:"value"`
		Version *string `json:"version"`
	}
	c.do(ctx, &op, http.MethodGet, "/api?"+q.Encode(), nil, &ans)
	switch {
	case op.Outcome == Unknown || op.Outcome == Refused:
	case op.Status == http.StatusOK || op.Status == http.StatusNotFound:
		op.Outcome, op.Found, op.Value = Done, op.Status == http.StatusOK, ans.Value
		if ans.Version != nil {
			c.version(&op, *ans.Version)
		}
	default:
		op.Outcome, op.Err = Unknown, fmt.Sprintf("unexpected answer %d", op.Status)
	}
	c.Rec.Add(op)
	return op
}

// version sets op's token and its version; a token that does not decode
// makes the operation's outcome unknown.
func (c *Client) version(op *Op, tok string) {
	v, err := VersionOf(tok)
	if err != nil {
		op.Outcome, op.Err = Unknown, err.Error()
		return
	}
	op.Token, op.Version = tok, v
}

// do sends one request and decodes its JSON answer into ans; it sets op's
// times, status, and the outcome Unknown (no answer, 5xx) or Refused (4xx
// other than 404) when the answer settles it.
func (c *Client) do(ctx context.Context, op *Op, method, path string, body io.Reader, ans any) {
	op.Call = time.Now()
	defer func() { op.Return = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		op.Outcome, op.Err = Refused, err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Prepare != nil {
		c.Prepare(req)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		op.Outcome, op.Err = Unknown, err.Error()
		return
	}
	defer resp.Body.Close()
	op.Status = resp.StatusCode
	b, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		op.Outcome, op.Err = Unknown, err.Error()
	case resp.StatusCode >= 500:
		op.Outcome, op.Err = Unknown, string(bytes.TrimSpace(b))
	case resp.StatusCode >= 400 && resp.StatusCode != http.StatusNotFound:
		op.Outcome, op.Err = Refused, string(bytes.TrimSpace(b))
	default:
		if err := json.Unmarshal(b, ans); err != nil {
			op.Outcome, op.Err = Unknown, fmt.Sprintf("answer %q: %v", b, err)
		}
	}
}
