package main

import (
	"encoding/json"
	"os"
	"sort"
	"sync"
	"time"
)

// attempt is one write a client sent: what it asked, when, and what it got.
// Only a 202 promises anything; a 503, a 5xx or a timeout promises nothing
// either way (the operation may still be applied).
type attempt struct {
	Key    string    `json:"key"`
	Op     string    `json:"op"` // put | delete
	Value  string    `json:"value,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Status int       `json:"status"` // 0: no answer (transport error, client timeout)
	Err    string    `json:"err,omitempty"`
	OpID   string    `json:"op_id,omitempty"`
	TS     time.Time `json:"timestamp,omitempty"` // from the 202 body
}

func (a attempt) acked() bool { return a.Status == 202 && a.OpID != "" }

// version orders operations as the service does: (timestamp, op id); op ids
// are canonical lowercase UUIDs, whose string order is PostgreSQL's order.
type version struct {
	TS   time.Time
	OpID string
}

func (v version) less(w version) bool {
	if !v.TS.Equal(w.TS) {
		return v.TS.Before(w.TS)
	}
	return v.OpID < w.OpID
}

func (v version) String() string { return v.TS.UTC().Format(time.RFC3339Nano) + "/" + v.OpID }

// ledger records every attempt of one fault, and the reads' outcomes.
type ledger struct {
	mu       sync.Mutex
	attempts []attempt

	reads, readErrs int            // reads answered 200/404 vs anything else
	readFails       map[string]int // failed reads by status ("503", or the client's error)
	readMax         float64        // seconds
	reads1          []readRec
}

func (l *ledger) add(a attempt) {
	l.mu.Lock()
	l.attempts = append(l.attempts, a)
	l.mu.Unlock()
}

// read records a read's outcome; status is how a failed one failed.
func (l *ledger) read(ok bool, status string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.reads++
	} else {
		l.readErrs++
		if l.readFails == nil {
			l.readFails = map[string]int{}
		}
		l.readFails[status]++
	}
	if s := d.Seconds(); s > l.readMax {
		l.readMax = s
	}
}

// readDone records one read's outcome beside the counts.
func (l *ledger) readDone(rd readRec) {
	l.mu.Lock()
	l.reads1 = append(l.reads1, rd)
	l.mu.Unlock()
}

func (l *ledger) readLog() []readRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]readRec(nil), l.reads1...)
}

func (l *ledger) snapshot() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]attempt(nil), l.attempts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// save writes the ledger as JSON lines: the evidence behind the figures.
func (l *ledger) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, a := range l.snapshot() {
		if err := enc.Encode(a); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
