// Package supervisor runs processes under a supervisord of their own: a
// Program is one process (its command, environment, user, priority and
// health probe), a Stack starts programs in priority order and waits for
// each to answer, and a Supervisor controls the running supervisord (start,
// stop, signal, kill -9, replace).
//
// The private engines of internal/engine run under it, and so does the
// lab's native stack (lab/native). It uses the standard library only.
package supervisor
