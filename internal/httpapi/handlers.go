package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/kv"
)

// failRequest answers the edge's own errors (size, syntax) and hands the
// rest to fail.
func (a *api) failRequest(w http.ResponseWriter, r *http.Request, err error) {
	a.failAbout(w, r, "", err)
}

// failAbout is failRequest for an answer about key, which names the
// version the error carries (a delete's, the newest seen by a wait).
func (a *api) failAbout(w http.ResponseWriter, r *http.Request, key string, err error) {
	var br *badRequest
	var refused *auth.Error
	switch {
	case errors.As(err, &refused):
		a.refuse(w, r, err)
	case errors.Is(err, errTooLarge):
		writeError(w, r, http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than the limit")
	case errors.As(err, &br):
		writeError(w, r, http.StatusBadRequest, br.code, br.msg)
	default:
		a.fail(w, r, key, err)
	}
}

type readResponse struct {
	Key    string    `json:"key"`
	Value  string    `json:"value"`
	Source kv.Source `json:"source"`
	// Version is the token of the state returned: a later
	// ?min_version= with it never reads an older one.
	Version *string `json:"version"`
	// WrittenBy names who wrote the state returned (?with=writer): the
	// subject of their token, "" when none was named (auth off, or a
	// state older than attribution).
	WrittenBy *string `json:"written_by,omitempty"`
}

// getKey serves GET /api?key=K, and with &min_version=T a state at least
// as new as T, waiting (at most &timeout=, else KV_WAIT_TIMEOUT) for it;
// with &with=writer, the state PostgreSQL holds and who wrote it.
func (a *api) getKey(w http.ResponseWriter, r *http.Request) {
	req, err := a.parseRead(r)
	if err == nil {
		err = a.authorize(r, auth.Read, req.Key)
	}
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	read, err := a.svc.Read(r.Context(), req)
	if err != nil {
		a.failAbout(w, r, req.Key, err)
		return
	}
	resp := readResponse{
		Key: read.Entry.Key, Value: read.Entry.Value, Source: read.Source,
		Version: a.version(w, req.Key, read.Entry.Version),
	}
	if req.WithWriter {
		resp.WrittenBy = &read.Entry.WrittenBy
	}
	writeJSON(w, r, http.StatusOK, resp)
}

// paramWith asks a read for more than the value: with=writer names who
// wrote it, which only PostgreSQL keeps.
const paramWith, withWriter = "with", "writer"

// parseRead reads a GET's query into the read it asks for; the service
// validates the key.
func (a *api) parseRead(r *http.Request) (kv.ReadRequest, error) {
	var req kv.ReadRequest
	q, err := queryOf(r)
	if err != nil {
		return req, err
	}
	key, ok, err := single(q, "key")
	switch {
	case err != nil:
		return req, err
	case !ok:
		return req, &kv.ValidationError{Field: "key", Reason: "missing; use ?key="}
	case q.Has(paramWait):
		return req, &kv.ValidationError{Field: paramWait, Reason: "only on PUT and DELETE; a read waits with min_version"}
	}
	req.Key = key
	min, waits, err := a.minVersion(q, key)
	if err != nil {
		return req, err
	}
	if waits {
		req.MinVersion = &min
	}
	if req.Timeout, err = waitTimeout(q, waits); err != nil {
		return req, err
	}
	with, asked, err := single(q, paramWith)
	switch {
	case err != nil:
		return req, err
	case asked && with != withWriter:
		return req, &badRequest{code: "invalid_with", msg: "with takes one value: writer"}
	case asked && waits:
		return req, &badRequest{code: "invalid_with", msg: "with=writer reads PostgreSQL at once; it does not wait with min_version"}
	}
	req.WithWriter = asked
	return req, nil
}

type acceptedResponse struct {
	// Status is "accepted" (202: durable, to be applied), or, for a write
	// that waited, "applied" or "superseded" (200).
	Status    string  `json:"status"`
	Op        kv.Kind `json:"op"`
	Key       string  `json:"key"`
	OpID      string  `json:"op_id"`
	Timestamp string  `json:"timestamp"`
	// Version is the operation's token, for ?min_version=.
	Version *string `json:"version"`
	// StoredVersion is the token of the newer operation that superseded
	// this one.
	StoredVersion *string `json:"stored_version,omitempty"`
}

// writeWrite answers a write: 202 while it is pending, 200 once it was
// applied or superseded.
func (a *api) writeWrite(w http.ResponseWriter, r *http.Request, res kv.Write) {
	op := res.Op
	body := acceptedResponse{
		Status: res.Status.String(), Op: op.Kind, Key: op.Key,
		OpID: op.Version.OpID.String(), Timestamp: op.Version.Time.Format(kv.TimestampLayout),
		Version: a.version(w, op.Key, op.Version),
	}
	status := http.StatusOK
	switch res.Status {
	case kv.Pending:
		status = http.StatusAccepted
	case kv.Superseded:
		t := a.tokens.Encode(op.Key, res.Stored)
		body.StoredVersion = &t
	}
	writeJSON(w, r, status, body)
}

// putKey takes the key and value from the body; a ?key= beside it must name
// the same key, as for DELETE, rather than be silently ignored. With
// ?wait=applied it waits (at most &timeout=, else KV_WAIT_TIMEOUT) for the
// write to be applied.
func (a *api) putKey(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, kv.KindPut)
}

// deleteKey takes the key from the query or from a {"key":K} body; given in
// both, they must agree.
func (a *api) deleteKey(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, kv.KindDelete)
}

// write serves a PUT or a DELETE: parsed, authorized, handed to the
// service. The write carries its writer (authenticate put it in the
// context) into the message, the span and the row.
func (a *api) write(w http.ResponseWriter, r *http.Request, kind kv.Kind) {
	req, err := a.parseWrite(w, r, kind)
	if err == nil {
		err = a.authorize(r, auth.Write, req.Key)
	}
	if err == nil {
		var res kv.Write
		if res, err = a.svc.Write(r.Context(), req); err == nil {
			a.writeWrite(w, r, res)
			return
		}
	}
	a.failRequest(w, r, err)
}

// parseWrite reads a PUT's or DELETE's query (?key=, ?wait=applied with its
// &timeout=) and its body, within KV_MAX_BODY_BYTES, into the write it
// asks for; the service validates the key and the value.
func (a *api) parseWrite(w http.ResponseWriter, r *http.Request, kind kv.Kind) (kv.WriteRequest, error) {
	req := kv.WriteRequest{Kind: kind}
	q, err := queryOf(r)
	if err != nil {
		return req, err
	}
	key, given, err := single(q, "key")
	if err != nil {
		return req, err
	}
	if req.Wait, req.Timeout, err = waitParams(q); err != nil {
		return req, err
	}
	body, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return req, err
	}
	if kind == kv.KindPut || len(body) > 0 {
		in, err := decodeWrite(body)
		switch {
		case err != nil:
			return req, err
		case kind == kv.KindPut && in.Value == nil:
			return req, &kv.ValidationError{Field: "value", Reason: "missing"}
		case kind == kv.KindDelete && in.Value != nil:
			return req, &kv.ValidationError{Field: "value", Reason: "not allowed in a delete"}
		case given && *in.Key != key:
			return req, errKeysDisagree
		}
		key, given = *in.Key, true
		if in.Value != nil {
			req.Value = *in.Value
		}
	}
	if !given {
		return req, &kv.ValidationError{Field: "key", Reason: "missing; use ?key= or a {\"key\":…} body"}
	}
	req.Key = key
	return req, nil
}

// errKeysDisagree answers a write whose ?key= and body name different keys.
var errKeysDisagree = &kv.ValidationError{Field: "key", Reason: "query and body name different keys"}

func writeJSON(w http.ResponseWriter, _ *http.Request, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}

// authorize returns nil when the request's principal may exercise right on
// key, else the refusal (an *auth.Error), which says nothing of the key.
func (a *api) authorize(r *http.Request, right auth.Right, key string) error {
	return a.auth.Authorize(principal(r), right, key)
}

// Tokens turns a key's versions into the opaque tokens clients hold, and
// back (package token).
type Tokens interface {
	Encode(key string, v kv.Version) string
	// Decode fails on a token this deployment never issued for key.
	Decode(key, token string) (kv.Version, error)
}

// VersionHeader carries the version token of what an answer is about: the
// operation a 202 accepted, the state a read returns.
const VersionHeader = "KV-Version"

// version renders v of key as a token and sets the version header; the
// zero version (nothing stored) has none.
func (a *api) version(w http.ResponseWriter, key string, v kv.Version) *string {
	if v == (kv.Version{}) {
		return nil
	}
	t := a.tokens.Encode(key, v)
	w.Header().Set(VersionHeader, t)
	return &t
}

// versionOf returns the version an error names, if any: the delete that
// made a key not found, the newest version seen when a wait timed out.
func versionOf(err error) (kv.Version, bool) {
	var nf *kv.NotFoundError
	var nr *kv.NotReachedError
	switch {
	case errors.As(err, &nf):
		return nf.Version, true
	case errors.As(err, &nr):
		return nr.Newest, true
	}
	return kv.Version{}, false
}
