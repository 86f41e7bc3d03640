// Package history records what clients of kvstack asked and were answered,
// and checks those histories against kvstack's consistency promises
// (docs/DESIGN.md, Consistency) with porcupine, the checker etcd's
// robustness tests use:
//
//   - Linearizable: writes answered 200 to ?wait=applied, and plain GETs,
//     behave as one register per key. A write without a 200 (a 202 once
//     its wait ran out, a plain 202, an error, no answer) may take effect
//     at any time after it was sent, or never: its end is unknown.
//   - Sessions: a GET carrying a token (?min_version=) never returns a
//     state older than the token, and the GETs of one client that carry
//     tokens never go back.
//   - Convergence: once the writes stopped and the queues drained, each key
//     holds its newest accepted write by (timestamp, op id): none lost,
//     none resurrected.
//
// A history that breaks a model is written out as porcupine's HTML
// visualisation, named in the error, so that a person can see the anomaly.
package history
