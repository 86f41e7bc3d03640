package supervisor

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Program is one process the supervisor runs: a [program:NAME] section of
// supervisord.conf, and what Up needs to know about it.
type Program struct {
	Name    string
	Command []string
	Env     map[string]string // on top of supervisord's own (minimal) environment
	Dir     string            // working directory
	User    string            // run as this user (when supervisord runs as root)
	// Priority orders the start: Up starts the programs of one priority
	// together and waits until each is healthy before the next priority.
	Priority   int
	StartSecs  int           // how long it must stay up to count as started (default 1)
	StopSignal string        // TERM unless set
	StopWait   time.Duration // before SIGKILL
	// Manual programs are defined but not started by Up (the chaos
	// campaign's extra consumers); once started they are supervised alike.
	Manual bool
	// NoRestart programs are not restarted by supervisord when they exit:
	// something else heals them.
	NoRestart bool
	Health    Probe
	Addr      string // shown by status
	// Binary is a Go binary the stack builds: Up restarts the program,
	// one replica at a time, when the running image differs from it.
	Binary string
	Log    string // where its output goes
}

// Probe tells whether a running program answers.
type Probe interface {
	Check(ctx context.Context) error
	String() string
}

// HTTPProbe answers when GET http://Addr+Path is 2xx; https:// with TLS
// (the edge), which says which CA to trust.
type HTTPProbe struct {
	Addr, Path string
	TLS        *tls.Config
}

var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (p HTTPProbe) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.String(), nil)
	if err != nil {
		return err
	}
	client := probeClient
	if p.TLS != nil {
		client = &http.Client{Timeout: probeClient.Timeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: p.TLS}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", p, resp.Status)
	}
	return nil
}

func (p HTTPProbe) String() string {
	if p.TLS != nil {
		return "https://" + p.Addr + p.Path
	}
	return "http://" + p.Addr + p.Path
}

// TCPProbe answers when every address accepts a connection.
type TCPProbe struct{ Addrs []string }

func (p TCPProbe) Check(ctx context.Context) error {
	for _, a := range p.Addrs {
		if err := dialClose(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

func (p TCPProbe) String() string { return "tcp " + strings.Join(p.Addrs, " ") }

func dialClose(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// RedisProbe answers when PING gets PONG (not -LOADING while a dump loads):
// over TLS when TLS is set, after AUTH as the default user when Password
// is.
type RedisProbe struct {
	Addr     string
	TLS      *tls.Config
	Password string
}

func (p RedisProbe) Check(ctx context.Context) error {
	d := net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if p.TLS != nil {
		c, err = (&tls.Dialer{NetDialer: &d, Config: p.TLS}).DialContext(ctx, "tcp", p.Addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", p.Addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if p.Password != "" {
		if err := redisCommand(c, r, "+OK", "AUTH", p.Password); err != nil {
			return err
		}
	}
	return redisCommand(c, r, "+PONG", "PING")
}

// redisCommand sends args as a RESP array and wants the reply want.
func redisCommand(c net.Conn, r *bufio.Reader, want string, args ...string) error {
	msg := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		msg += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != want {
		return fmt.Errorf("%s: %s", args[0], strings.TrimSpace(line))
	}
	return nil
}

func (p RedisProbe) String() string { return "redis PING " + p.Addr }

// Wait polls probe until it answers, ctx ends or timeout passes; the error
// names the last failure.
func Wait(ctx context.Context, probe Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := probe.Check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no answer within %s: %w", probe, timeout, err)
		case <-tick.C:
		}
	}
}
