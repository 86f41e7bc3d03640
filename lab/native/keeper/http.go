package keeper

import (
	"fmt"
	"net/http"
	"time"
)

// Handler serves GET /healthz: 200 while a primary answers, 503 when none
// does, the body saying which node is which either way (make status shows
// it).
func (k *Keeper) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := k.State()
		if st.Primary == "" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, st.Line())
	})
	return mux
}

// Line is the state in one line.
func (st State) Line() string {
	if st.Primary == "" {
		return "no primary: " + st.Problem
	}
	s := fmt.Sprintf("primary %s, standby %s", st.Primary, st.Standby)
	switch {
	case st.Synchronous:
		s += " (streaming, synchronous)"
	case st.Streaming:
		s += " (streaming, catching up: not synchronous yet)"
	default:
		s += " (not streaming: " + st.Problem + ")"
	}
	if st.Failovers > 0 {
		s += fmt.Sprintf("; %d failover(s), the last %s ago", st.Failovers, time.Since(st.LastFailover).Round(time.Second))
	}
	return s
}
