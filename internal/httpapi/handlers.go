package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

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
	read, key, err := a.read(r)
	if err != nil {
		a.failAbout(w, r, key, err)
		return
	}
	resp := readResponse{
		Key: read.Entry.Key, Value: read.Entry.Value, Source: read.Source,
		Version: a.version(w, key, read.Entry.Version),
	}
	if read.withWriter {
		resp.WrittenBy = &read.Entry.WrittenBy
	}
	writeJSON(w, r, http.StatusOK, resp)
}

// keyRead is a read and whether it asked for its writer.
type keyRead struct {
	kv.Read
	withWriter bool
}

// paramWith asks a read for more than the value: with=writer names who
// wrote it, which only PostgreSQL keeps.
const paramWith, withWriter = "with", "writer"

func (a *api) read(r *http.Request) (keyRead, string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return keyRead{}, "", &badRequest{code: "invalid_query", msg: "query string is malformed"}
	}
	key, ok, err := single(q, "key")
	switch {
	case err != nil:
		return keyRead{}, "", err
	case !ok:
		return keyRead{}, "", &kv.ValidationError{Field: "key", Reason: "missing; use ?key="}
	}
	if err := a.svc.Limits().ValidateKey(key); err != nil {
		return keyRead{}, "", err
	}
	if err := a.authorize(r, auth.Read, key); err != nil {
		return keyRead{}, "", err
	}
	if q.Has(paramWait) {
		return keyRead{}, "", &kv.ValidationError{Field: paramWait, Reason: "only on PUT and DELETE; a read waits with min_version"}
	}
	min, waits, err := a.minVersion(q, key)
	if err != nil {
		return keyRead{}, "", err
	}
	timeout, err := waitTimeout(q, waits)
	if err != nil {
		return keyRead{}, "", err
	}
	with, asked, err := single(q, paramWith)
	switch {
	case err != nil:
		return keyRead{}, "", err
	case asked && with != withWriter:
		return keyRead{}, "", &badRequest{code: "invalid_with", msg: "with takes one value: writer"}
	case asked && waits:
		return keyRead{}, "", &badRequest{code: "invalid_with", msg: "with=writer reads PostgreSQL at once; it does not wait with min_version"}
	}
	var read kv.Read
	switch {
	case asked:
		read, err = a.svc.GetWritten(r.Context(), key)
	case waits:
		read, err = a.svc.GetAtLeast(r.Context(), key, min, a.svc.WaitConfig().Bound(timeout))
	default:
		read, err = a.svc.Get(r.Context(), key)
	}
	return keyRead{read, asked}, key, err
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

func (a *api) writeAccepted(w http.ResponseWriter, r *http.Request, op kv.Op) {
	a.writeWrite(w, r, kv.Write{Op: op, Status: kv.Pending})
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
	in, err := a.readWriteInput(w, r)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	req, err := decodeWrite(in.body)
	switch {
	case err != nil:
	case req.Value == nil:
		err = &kv.ValidationError{Field: "value", Reason: "missing"}
	case in.inQuery && *req.Key != in.key:
		err = errKeysDisagree
	default:
		err = a.authorize(r, auth.Write, *req.Key)
	}
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	// The write carries its writer (authenticate put it in the context)
	// into the message, the span and the row.
	ctx := r.Context()
	if in.waits {
		res, err := a.svc.PutApplied(ctx, *req.Key, *req.Value, a.svc.WaitConfig().Bound(in.timeout))
		a.answerWrite(w, r, res, err)
		return
	}
	op, err := a.svc.Put(ctx, *req.Key, *req.Value)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	a.writeAccepted(w, r, op)
}

func (a *api) answerWrite(w http.ResponseWriter, r *http.Request, res kv.Write, err error) {
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	a.writeWrite(w, r, res)
}

// writeInput is what a PUT or DELETE brings besides its JSON: the key of
// ?key= (inQuery when given), ?wait=applied with its &timeout=, and the
// body, not yet decoded.
type writeInput struct {
	key     string
	inQuery bool
	waits   bool
	timeout *time.Duration
	body    []byte
}

// readWrite reads and validates a write's query, then reads its body
// within KV_MAX_BODY_BYTES.
func (a *api) readWriteInput(w http.ResponseWriter, r *http.Request) (writeInput, error) {
	var in writeInput
	var err error
	if in.key, in.inQuery, err = queryKey(r); err != nil {
		return in, err
	}
	if in.waits, in.timeout, err = waitParams(r); err != nil {
		return in, err
	}
	in.body, err = readBody(w, r, a.cfg.MaxBodyBytes)
	return in, err
}

// errKeysDisagree answers a write whose ?key= and body name different keys.
var errKeysDisagree = &kv.ValidationError{Field: "key", Reason: "query and body name different keys"}

// deleteKey takes the key from the query or from a {"key":K} body; given in
// both, they must agree.
func (a *api) deleteKey(w http.ResponseWriter, r *http.Request) {
	in, err := a.readWriteInput(w, r)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	key, ok := in.key, in.inQuery
	if len(in.body) > 0 {
		req, err := decodeWrite(in.body)
		switch {
		case err != nil:
		case req.Value != nil:
			err = &kv.ValidationError{Field: "value", Reason: "not allowed in a delete"}
		case ok && *req.Key != key:
			err = errKeysDisagree
		}
		if err != nil {
			a.failRequest(w, r, err)
			return
		}
		key, ok = *req.Key, true
	}
	if !ok {
		a.failRequest(w, r, &kv.ValidationError{Field: "key", Reason: "missing; use ?key= or a {\"key\":…} body"})
		return
	}
	if err := a.authorize(r, auth.Write, key); err != nil {
		a.failRequest(w, r, err)
		return
	}
	ctx := r.Context()
	if in.waits {
		res, err := a.svc.DeleteApplied(ctx, key, a.svc.WaitConfig().Bound(in.timeout))
		a.answerWrite(w, r, res, err)
		return
	}
	op, err := a.svc.Delete(ctx, key)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	a.writeAccepted(w, r, op)
}

func writeJSON(w http.ResponseWriter, _ *http.Request, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}
