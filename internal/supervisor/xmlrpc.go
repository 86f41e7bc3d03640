package supervisor

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// rpcClient speaks XML-RPC to supervisord over its unix socket: the
// interface supervisorctl itself uses, without a Python start-up per call.
type rpcClient struct {
	http *http.Client
}

func newRPCClient(socket string) *rpcClient {
	return &rpcClient{http: &http.Client{
		Timeout: 2 * time.Minute, // startProcess/stopProcess with wait block until done
		Transport: &http.Transport{
			// No idle connections: nothing lingers (goleak) between calls.
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}}
}

// Fault is an XML-RPC fault from supervisord (BAD_NAME, NOT_RUNNING, …).
type Fault struct {
	Code   int
	String string
}

func (f *Fault) Error() string { return fmt.Sprintf("supervisord: %s (fault %d)", f.String, f.Code) }

// Fault codes supervisord uses (supervisor/xmlrpc.py).
const (
	faultBadName        = 10
	faultAlreadyStarted = 60
	faultNotRunning     = 70
	faultAlreadyAdded   = 90
)

// isFault reports whether err is a supervisord fault with that code.
func isFault(err error, code int) bool {
	var f *Fault
	return errors.As(err, &f) && f.Code == code
}

// call invokes method with string, bool or int params and decodes the
// result into Go values: string, int, bool, []any, map[string]any.
func (c *rpcClient) call(ctx context.Context, method string, params ...any) (any, error) {
	var body bytes.Buffer
	body.WriteString(`<?xml version="1.0"?><methodCall><methodName>`)
	xml.EscapeText(&body, []byte(method))
	body.WriteString(`</methodName><params>`)
	for _, p := range params {
		body.WriteString("<param><value>")
		switch v := p.(type) {
		case string:
			body.WriteString("<string>")
			xml.EscapeText(&body, []byte(v))
			body.WriteString("</string>")
		case bool:
			b := 0
			if v {
				b = 1
			}
			fmt.Fprintf(&body, "<boolean>%d</boolean>", b)
		case int:
			fmt.Fprintf(&body, "<int>%d</int>", v)
		default:
			return nil, fmt.Errorf("xml-rpc %s: parameter of type %T", method, p)
		}
		body.WriteString("</value></param>")
	}
	body.WriteString(`</params></methodCall>`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://supervisord/RPC2", &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("xml-rpc %s: %s", method, resp.Status)
	}
	v, err := decodeResponse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("xml-rpc %s: %w", method, err)
	}
	return v, nil
}

// decodeResponse reads a methodResponse: its one param, or its fault.
func decodeResponse(r io.Reader) (any, error) {
	var resp struct {
		Param *xmlValue `xml:"params>param>value"`
		Fault *xmlValue `xml:"fault>value"`
	}
	if err := xml.NewDecoder(r).Decode(&resp); err != nil {
		return nil, err
	}
	switch {
	case resp.Fault != nil:
		v, err := resp.Fault.decode()
		if err != nil {
			return nil, err
		}
		m, _ := v.(map[string]any)
		code, _ := m["faultCode"].(int)
		text, _ := m["faultString"].(string)
		return nil, &Fault{Code: code, String: text}
	case resp.Param != nil:
		return resp.Param.decode()
	}
	return nil, errors.New("response holds neither a value nor a fault")
}

// xmlValue is one <value>: exactly one typed child, or bare text (a string).
type xmlValue struct {
	Inner string `xml:",innerxml"`
}

func (v xmlValue) decode() (any, error) {
	d := xml.NewDecoder(strings.NewReader(v.Inner))
	tok, err := nextElement(d)
	if err == io.EOF {
		return html.UnescapeString(strings.TrimSpace(v.Inner)), nil
	}
	if err != nil {
		return nil, err
	}
	switch tok.Name.Local {
	case "string":
		var s string
		err := d.DecodeElement(&s, &tok)
		return s, err
	case "int", "i4", "i8":
		var s string
		if err := d.DecodeElement(&s, &tok); err != nil {
			return nil, err
		}
		return strconv.Atoi(strings.TrimSpace(s))
	case "boolean":
		var s string
		if err := d.DecodeElement(&s, &tok); err != nil {
			return nil, err
		}
		return strings.TrimSpace(s) == "1", nil
	case "double":
		var s string
		if err := d.DecodeElement(&s, &tok); err != nil {
			return nil, err
		}
		return strconv.ParseFloat(strings.TrimSpace(s), 64)
	case "nil":
		return nil, nil
	case "array":
		var a struct {
			Values []xmlValue `xml:"data>value"`
		}
		if err := d.DecodeElement(&a, &tok); err != nil {
			return nil, err
		}
		out := make([]any, len(a.Values))
		for i, e := range a.Values {
			if out[i], err = e.decode(); err != nil {
				return nil, err
			}
		}
		return out, nil
	case "struct":
		var s struct {
			Members []struct {
				Name  string   `xml:"name"`
				Value xmlValue `xml:"value"`
			} `xml:"member"`
		}
		if err := d.DecodeElement(&s, &tok); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(s.Members))
		for _, m := range s.Members {
			if out[m.Name], err = m.Value.decode(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported xml-rpc type <%s>", tok.Name.Local)
}

func nextElement(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se, nil
		}
	}
}
